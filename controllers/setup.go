package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/version"
)

// secretNameIndex indexes connections by the Secrets they name: the
// credentials Secret and the token Secret. A change to either Secret finds
// its connections through it.
const secretNameIndex = "servicenow.snowauth.dev/secret-names"

// Options are what AddConnectionController needs besides the manager.
type Options struct {
	// Tokens talks to ServiceNow (a *servicenow.Client).
	Tokens TokenSource
	// Authorization configures the AuthorizationCode grant; nil when the
	// authorization server is off. Its Namespace must be in the manager's
	// CacheOptions.
	Authorization *Authorization
	// Namespaces restricts the watches (nil: every namespace); it must
	// match the manager's CacheOptions.
	Namespaces []string
	// Controller tunes the controller (workers, say).
	Controller controller.Options
	// Metrics receives the per-connection collector; nil means
	// controller-runtime's registry, which the manager serves on /metrics.
	Metrics prometheus.Registerer
	// Now is the reconciler's clock; nil means the wall clock. Tests skew it.
	Now func() time.Time
	// Sharded says the manager serves only the connections a label
	// selector matches (CacheOptions): other shards' hand-overs are left
	// to them while they may be taken.
	Sharded bool
	// RevokeTimeout is how long after a connection with spec.revokeOnDelete
	// was deleted snowauth keeps trying to revoke its tokens before it lets
	// the connection go anyway; zero means DefaultRevokeTimeout.
	RevokeTimeout time.Duration
}

// AddConnectionController is the one place that wires snowauth's
// reconciler into a manager: cmd/main.go and the tests' managers both call
// it, so tests run what production runs. It registers:
//   - the reconciler, watching connections on spec changes (and deletion,
//     which moves the generation) and annotation changes (a refresh or
//     revoke request); status writes do not wake it up;
//   - token Secrets, through their controller owner reference, so a deleted
//     or edited token Secret is repaired at once;
//   - every Secret's metadata (name and version only, from a separate
//     cache), mapped through secretNameIndex to the connections that name
//     it, so a created or rotated credentials Secret, or a removed
//     conflicting Secret, is acted on at once without caching Secret data;
//   - the per-connection metrics, computed from the cache at scrape time.
func AddConnectionController(mgr ctrl.Manager, o Options) (*ServiceNowConnectionReconciler, error) {
	r := &ServiceNowConnectionReconciler{
		Client:        mgr.GetClient(),
		APIReader:     mgr.GetAPIReader(),
		Recorder:      mgr.GetEventRecorder("snowauth"),
		Tokens:        o.Tokens,
		Authorization: o.Authorization,
		Now:           o.Now,
	}
	r.revocations.timeout = o.RevokeTimeout
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &snowv1.ServiceNowConnection{}, linkIDIndex,
		func(o client.Object) []string {
			if a := o.(*snowv1.ServiceNowConnection).Status.Authorization; a != nil && a.LinkID != "" {
				return []string{a.LinkID}
			}
			return nil
		}); err != nil {
		return nil, err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &snowv1.ServiceNowConnection{}, secretNameIndex,
		func(o client.Object) []string {
			conn := o.(*snowv1.ServiceNowConnection)
			return []string{conn.Spec.CredentialsSecretRef.Name, conn.TokenSecretName()}
		}); err != nil {
		return nil, err
	}

	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Secret{}, tokenFingerprintIndex,
		func(o client.Object) []string {
			if fp := o.GetAnnotations()[annotationTokenSHA256]; fp != "" && controlledByConnection(o.(*corev1.Secret)) {
				return []string{fp}
			}
			return nil
		}); err != nil {
		return nil, err
	}

	secretMeta, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:            mgr.GetScheme(),
		Mapper:            mgr.GetRESTMapper(),
		DefaultNamespaces: namespaceConfig(o.Namespaces),
		DefaultTransform:  keepIdentityOnly,
	})
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(secretMeta); err != nil {
		return nil, err
	}
	r.secretMeta = secretMeta

	err = ctrl.NewControllerManagedBy(mgr).
		For(&snowv1.ServiceNowConnection{}, builder.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Secret{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.connectionOfHandover)).
		WatchesRawSource(source.Kind[client.Object](secretMeta, secretMetadata(),
			handler.EnqueueRequestsFromMapFunc(r.connectionsNaming))).
		WithOptions(o.Controller).
		Named("servicenowconnection").
		Complete(r)
	if err != nil {
		return nil, err
	}

	if o.Authorization != nil {
		if err := mgr.Add(&handoverSweeper{r: r, sharded: o.Sharded}); err != nil {
			return nil, err
		}
	}

	metrics := o.Metrics
	if metrics == nil {
		metrics = ctrlmetrics.Registry
	}
	if err := metrics.Register(&ConnectionCollector{Reader: mgr.GetCache(), Elected: mgr.Elected(), Build: version.Get()}); err != nil {
		return nil, fmt.Errorf("registering the connection metrics: %w", err)
	}
	return r, nil
}

// linkIDIndex indexes connections by their current authorization link.
const linkIDIndex = "servicenow.snowauth.dev/link-id"

// tokenFingerprintIndex indexes token Secrets by the fingerprint of the
// access token snowauth wrote: connections of one OAuth client and user
// hold the same token (revoke.go).
const tokenFingerprintIndex = "servicenow.snowauth.dev/token-sha256"

// connectionOfHandover maps a hand-over Secret of the authorization server
// to the connection whose current link it completes.
func (r *ServiceNowConnectionReconciler) connectionOfHandover(ctx context.Context, secret client.Object) []reconcile.Request {
	if r.Authorization == nil || secret.GetNamespace() != r.Authorization.Namespace || secret.GetLabels()[authserver.LabelHandover] == "" {
		return nil
	}
	id := authserver.LinkIDOfHandover(secret.GetName())
	if id == "" {
		return nil
	}
	var conns snowv1.ServiceNowConnectionList
	if err := r.List(ctx, &conns, client.MatchingFields{linkIDIndex: id}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing connections for an authorization hand-over", "secret", secret.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(conns.Items))
	for _, c := range conns.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
	}
	return reqs
}

// connectionsNaming maps a Secret to the connections that name it.
func (r *ServiceNowConnectionReconciler) connectionsNaming(ctx context.Context, secret client.Object) []reconcile.Request {
	var conns snowv1.ServiceNowConnectionList
	if err := r.List(ctx, &conns, client.InNamespace(secret.GetNamespace()),
		client.MatchingFields{secretNameIndex: secret.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing connections for a Secret", "secret", secret.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(conns.Items))
	for _, c := range conns.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
	}
	return reqs
}

// randomJitter is the production Jitter.
func randomJitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max)
}
