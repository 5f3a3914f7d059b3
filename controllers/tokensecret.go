package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// annotationTokenSHA256 on the token Secret holds the SHA-256 of the
// access_token snowauth wrote, so an access_token edited by hand is noticed
// and replaced. A hash of a random token reveals nothing about it.
const annotationTokenSHA256 = "servicenow.snowauth.dev/token-sha256"

// storedToken is the token really in the token Secret now: the one
// snowauth wrote (its hash matches), with the expiry and instance snowauth
// recorded in status when the write succeeded. Ready is computed from it,
// never from what snowauth meant to write.
type storedToken struct {
	accessToken string
	expiry      time.Time
	instanceURL string
}

// lookUpTokenSecret finds the token Secret and the token in it. A Secret of
// that name that this connection does not control is a conflict: snowauth
// never takes over a Secret it did not create.
func (r *ServiceNowConnectionReconciler) lookUpTokenSecret(ctx context.Context, s *scope) error {
	key := types.NamespacedName{Namespace: s.conn.Namespace, Name: s.conn.TokenSecretName()}
	secret := &corev1.Secret{}
	cached, err := r.getSecret(ctx, key, secret)
	if err == nil && cached && trimmed(secret) && isOurs(secret, s.conn) {
		// A token Secret kept by deletionPolicy Retain has no owner, so
		// the cache holds no data for it (cache.go): read it whole.
		err = r.APIReader.Get(ctx, key, secret)
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	s.lookedUp = true
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case !isOurs(secret, s.conn):
		return needsPerson(snowv1.ReasonSecretConflict,
			"Secret %s already exists and is not this connection's; snowauth leaves it alone: delete it or set spec.tokenSecret.name", key.Name)
	}
	s.secret = secret
	// The other keys are not trusted: an edited expires_at or instance_url
	// is rewritten from status.
	st := s.conn.Status
	if tok := string(secret.Data[snowv1.TokenKeyAccessToken]); tok != "" && st.ExpiresAt != nil &&
		secret.Annotations[annotationTokenSHA256] == fingerprint(tok) {
		s.stored = &storedToken{accessToken: tok, expiry: st.ExpiresAt.Time, instanceURL: st.InstanceURL}
	}
	return nil
}

// getSecret reads a Secret snowauth writes (a token or refresh-token
// Secret) from the cache, which holds only Secrets labelled as snowauth's.
// When the metadata cache knows a Secret of that name the cache does not,
// it asks the API server whose it is (an unlabelled one, or one snowauth
// just created that the cache has not seen yet). cached says the Secret
// came from the cache.
func (r *ServiceNowConnectionReconciler) getSecret(ctx context.Context, key types.NamespacedName, secret *corev1.Secret) (cached bool, err error) {
	err = r.Get(ctx, key, secret)
	if !apierrors.IsNotFound(err) {
		return err == nil, err
	}
	if err = r.secretExists(ctx, key); err == nil {
		err = r.APIReader.Get(ctx, key, secret)
	}
	return false, err
}

// isOurs says whether secret is conn's token Secret: controlled by conn, or
// (kept by deletionPolicy Retain, so without an owner) controlled by nobody
// and labelled as snowauth's for a connection of conn's name, which then
// adopts it. snowauth never takes over any other Secret.
func isOurs(secret *corev1.Secret, conn *snowv1.ServiceNowConnection) bool {
	if metav1.IsControlledBy(secret, conn) {
		return true
	}
	return metav1.GetControllerOf(secret) == nil &&
		secret.Labels[snowv1.LabelManagedBy] == snowv1.ManagedByValue && secret.Labels[snowv1.LabelConnection] == conn.Name
}

// writeTokenSecret makes the token Secret hold tok, the operator's labels
// and the user's. It writes nothing when the Secret already says all that,
// and records in s what the Secret holds once the write succeeded.
//
// A repair (tok is no new token, only what status says the Secret holds)
// is written only from a connection confirmed current: a cached connection
// that has not caught up with this process's latest status write still
// holds the expiry before it, and would put that back over a newer token's.
func (r *ServiceNowConnectionReconciler) writeTokenSecret(ctx context.Context, s *scope, tok storedToken, repair bool) error {
	secret := s.secret
	if secret == nil {
		secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.conn.Namespace, Name: s.conn.TokenSecretName()}}
	}
	desired := secret.DeepCopy()
	desired.Type = corev1.SecretTypeOpaque
	desired.Data = map[string][]byte{
		snowv1.TokenKeyAccessToken: []byte(tok.accessToken),
		snowv1.TokenKeyTokenType:   []byte("Bearer"),
		snowv1.TokenKeyExpiresAt:   []byte(tok.expiry.UTC().Format(time.RFC3339)),
		snowv1.TokenKeyInstanceURL: []byte(tok.instanceURL),
	}
	desired.StringData = nil
	desired.Labels = map[string]string{}
	for k, v := range s.conn.Spec.TokenSecret.Labels {
		desired.Labels[k] = string(v)
	}
	desired.Labels[snowv1.LabelManagedBy] = snowv1.ManagedByValue
	desired.Labels[snowv1.LabelConnection] = s.conn.Name
	desired.Annotations = map[string]string{}
	for k, v := range s.conn.Spec.TokenSecret.Annotations {
		desired.Annotations[k] = v
	}
	desired.Annotations[annotationTokenSHA256] = fingerprint(tok.accessToken)
	keepFirstUsed(s, secret, desired)
	if s.conn.Spec.TokenSecret.DeletionPolicy == snowv1.TokenSecretRetain {
		// No owner: the Secret outlives the connection.
		desired.OwnerReferences = slices.DeleteFunc(desired.OwnerReferences, func(o metav1.OwnerReference) bool {
			return o.UID == s.conn.UID
		})
	} else if err := controllerutil.SetControllerReference(s.conn, desired, r.Scheme()); err != nil {
		return err
	}

	switch {
	case s.secret == nil:
		if err := r.Create(ctx, desired); err != nil {
			return err
		}
	case !equality.Semantic.DeepEqual(secret.Data, desired.Data) ||
		!equality.Semantic.DeepEqual(secret.Labels, desired.Labels) ||
		!equality.Semantic.DeepEqual(secret.Annotations, desired.Annotations) ||
		!slices.EqualFunc(secret.OwnerReferences, desired.OwnerReferences, func(a, b metav1.OwnerReference) bool {
			return equality.Semantic.DeepEqual(a, b)
		}):
		if repair {
			if err := r.confirmCacheIsCurrent(ctx, s); err != nil {
				return err
			}
		}
		if err := r.Update(ctx, desired); err != nil {
			return err
		}
	}
	s.secret, s.stored = desired, &tok
	return nil
}

// fingerprint is the hex SHA-256 of a token.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// writeOwnedSecret creates or updates one of the Secrets snowauth keeps for
// a connection (the refresh token, the signing keys): owned by it, labelled
// as snowauth's. cur is the cache's copy (nil: none). A conflict, or a
// Secret that exists though the cache had not seen it (this process's own,
// written a moment ago), is retried from the API server's copy; a Secret
// of that name that is not the connection's is a SecretConflict, left
// alone. It returns the Secret as last known, nil when there is none.
func (r *ServiceNowConnectionReconciler) writeOwnedSecret(ctx context.Context, s *scope, name string, cur *corev1.Secret,
	data map[string][]byte, annotations map[string]string, holds string) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: s.conn.Namespace, Name: name}
	again := false
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		if again {
			fresh := &corev1.Secret{}
			switch err := r.APIReader.Get(ctx, key, fresh); {
			case apierrors.IsNotFound(err):
				cur = nil
			case err != nil:
				return err
			case !metav1.IsControlledBy(fresh, s.conn):
				return needsPerson(snowv1.ReasonSecretConflict,
					"Secret %s exists and is not this connection's: delete it; snowauth keeps %s there", key.Name, holds)
			default:
				cur = fresh
			}
		}
		again = true
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		if cur != nil {
			secret = cur.DeepCopy()
		}
		secret.Type = corev1.SecretTypeOpaque
		secret.Data = data
		secret.Labels = map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue, snowv1.LabelConnection: s.conn.Name}
		if annotations != nil {
			secret.Annotations = annotations
		}
		if err := controllerutil.SetControllerReference(s.conn, secret, r.Scheme()); err != nil {
			return err
		}
		var err error
		if cur == nil {
			err = r.Create(ctx, secret)
		} else {
			err = r.Update(ctx, secret)
		}
		if err == nil {
			cur = secret
		}
		return err
	})
	return cur, err
}
