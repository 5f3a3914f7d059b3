package authserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// The signing keys live in one Secret in the operator's namespace: key
// signs new links, previous (optional) still verifies the links it signed.
// The manager reads it through the API; the authorization server mounts it
// as files. Rotating: move key to previous and put a new key in key; once
// the links the old key signed have expired (DefaultLinkTTL), drop
// previous. Each process picks a change up within keyReload.
const (
	KeyField         = "key"
	PreviousKeyField = "previous"
	keyReload        = 30 * time.Second
)

// KeySource gives the current Signer.
type KeySource interface {
	Signer(ctx context.Context) (*Signer, error)
}

// StaticKeys is a KeySource that never changes (tests, a demo).
type StaticKeys struct{ S *Signer }

// Signer returns the one Signer.
func (k StaticKeys) Signer(context.Context) (*Signer, error) { return k.S, nil }

// reloading caches a Signer for keyReload.
type reloading struct {
	load   func(ctx context.Context) ([][]byte, error)
	mu     sync.Mutex
	signer *Signer
	at     time.Time
}

func (r *reloading) Signer(ctx context.Context) (*Signer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.signer != nil && time.Since(r.at) < keyReload {
		return r.signer, nil
	}
	keys, err := r.load(ctx)
	if err == nil {
		var s *Signer
		if s, err = NewSigner(keys...); err == nil {
			r.signer, r.at = s, time.Now()
			return s, nil
		}
	}
	if r.signer != nil {
		return r.signer, nil // keep the last good keys through a failed reload
	}
	return nil, err
}

// KeysFromDir reads key and previous from a folder (the Secret mounted as
// a volume), again every keyReload.
func KeysFromDir(dir string) KeySource {
	return &reloading{load: func(context.Context) ([][]byte, error) {
		key, err := os.ReadFile(filepath.Join(dir, KeyField))
		if err != nil {
			return nil, fmt.Errorf("reading the authorization signing key: %w", err)
		}
		keys := [][]byte{key}
		if prev, err := os.ReadFile(filepath.Join(dir, PreviousKeyField)); err == nil && len(prev) > 0 {
			keys = append(keys, prev)
		}
		return keys, nil
	}}
}

// KeysFromSecret reads key and previous from Secret namespace/name through
// reader, again every keyReload. EnsureKeySecret creates it.
func KeysFromSecret(reader client.Reader, namespace, name string) KeySource {
	return &reloading{load: func(ctx context.Context) ([][]byte, error) {
		secret := &corev1.Secret{}
		if err := reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, secret); err != nil {
			return nil, fmt.Errorf("reading the authorization signing key Secret %s/%s: %w", namespace, name, err)
		}
		keys := [][]byte{secret.Data[KeyField]}
		if prev := secret.Data[PreviousKeyField]; len(prev) > 0 {
			keys = append(keys, prev)
		}
		return keys, nil
	}}
}

// EnsureKeySecret creates Secret namespace/name with a random key if it
// does not exist, and checks the key of one that does. Replicas that race
// to create it all end up with the winner's key.
func EnsureKeySecret(ctx context.Context, c client.Client, reader client.Reader, namespace, name string) error {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	for range 2 {
		secret := &corev1.Secret{}
		err := reader.Get(ctx, key, secret)
		if err == nil {
			if len(secret.Data[KeyField]) < minKeySize {
				return fmt.Errorf("secret %s/%s has no %q of at least %d bytes", namespace, name, KeyField, minKeySize)
			}
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading the authorization signing key: %w", err)
		}
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: namespace, Name: name,
				Labels: map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue},
			},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{KeyField: NewKey()},
		}
		err = c.Create(ctx, secret)
		if err == nil || !apierrors.IsAlreadyExists(err) {
			if err != nil {
				return fmt.Errorf("creating the authorization signing key: %w", err)
			}
			return nil
		}
		// Another replica created it first: check theirs.
	}
	return errors.New("could not read or create the authorization signing key " + namespace + "/" + name)
}
