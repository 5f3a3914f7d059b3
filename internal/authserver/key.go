package authserver

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// signingKeyField is the key of the signing key in its Secret.
const signingKeyField = "key"

// LoadOrCreateKey returns the signing key kept in Secret namespace/name,
// creating the Secret with a random key if it does not exist. Replicas that
// race to create it all end up with the winner's key. Rotating the key (edit
// or delete the Secret, restart the manager) only invalidates outstanding
// links.
func LoadOrCreateKey(ctx context.Context, c client.Client, reader client.Reader, namespace, name string) ([]byte, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	for range 2 {
		secret := &corev1.Secret{}
		err := reader.Get(ctx, key, secret)
		if err == nil {
			if k := secret.Data[signingKeyField]; len(k) >= minKeySize {
				return k, nil
			}
			return nil, fmt.Errorf("secret %s/%s has no %q of at least %d bytes", namespace, name, signingKeyField, minKeySize)
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading the authorization signing key: %w", err)
		}
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: namespace, Name: name,
				Labels: map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue},
			},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{signingKeyField: NewKey()},
		}
		err = c.Create(ctx, secret)
		if err == nil {
			return secret.Data[signingKeyField], nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating the authorization signing key: %w", err)
		}
		// Another replica created it first: read theirs.
	}
	return nil, fmt.Errorf("could not read or create the authorization signing key %s/%s", namespace, name)
}
