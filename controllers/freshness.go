package controllers

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// Cache freshness. The reconciler decides from caches (connections and
// snowauth's own Secrets in full, every other Secret as name and version
// only) and reads the API server only where a stale view would cost a token
// request or leak nothing: before a request, and for the credentials.

// errStaleCache says the cached connection is older than the API server's.
var errStaleCache = errors.New("the cached connection is stale")

// credentialsVersionFromCache sets s.creds to the credentials Secret's
// identity (no data) as the metadata cache knows it, or nil when it does not
// exist.
func (r *ServiceNowConnectionReconciler) credentialsVersionFromCache(ctx context.Context, s *scope) error {
	meta := secretMetadata()
	err := r.secretMeta.Get(ctx, types.NamespacedName{Namespace: s.conn.Namespace, Name: s.conn.Spec.CredentialsSecretRef.Name}, meta)
	switch {
	case apierrors.IsNotFound(err):
		s.creds = nil
	case err != nil:
		return err
	default:
		s.creds = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meta.Namespace, Name: meta.Name, ResourceVersion: meta.ResourceVersion}}
	}
	return nil
}

// secretExists returns nil when the metadata cache knows Secret key,
// NotFound otherwise.
func (r *ServiceNowConnectionReconciler) secretExists(ctx context.Context, key types.NamespacedName) error {
	return r.secretMeta.Get(ctx, key, secretMetadata())
}

// confirmCacheIsCurrent returns errStaleCache when the API server holds a
// newer connection than the cache: a token request costs ServiceNow a round
// trip and may be rate limited, so it must not be made because the cache
// lags behind the previous reconcile's status write.
func (r *ServiceNowConnectionReconciler) confirmCacheIsCurrent(ctx context.Context, s *scope) error {
	if s.fresh {
		return nil
	}
	if written, ok := r.written.Load(client.ObjectKeyFromObject(s.conn)); ok && written == s.conn.ResourceVersion {
		// The cache holds this process's own latest status write.
		return nil
	}
	current := &metav1.PartialObjectMetadata{}
	current.SetGroupVersionKind(snowv1.GroupVersion.WithKind("ServiceNowConnection"))
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s.conn), current); err != nil {
		return client.IgnoreNotFound(err)
	}
	if current.ResourceVersion != s.conn.ResourceVersion {
		return errStaleCache
	}
	return nil
}

// secretMetadata is an empty Secret metadata object, for the metadata cache.
func secretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}
