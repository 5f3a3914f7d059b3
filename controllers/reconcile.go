package controllers

import (
	"context"
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/credentials"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// TokenSource obtains tokens from ServiceNow, and asks whom and what they
// serve (probe.go). *servicenow.Client implements it; the reconciler needs
// nothing else from ServiceNow.
type TokenSource interface {
	ResolveInstance(instance string) (servicenow.Instance, error)
	Token(ctx context.Context, req servicenow.TokenRequest) (*servicenow.Token, error)
	CurrentUser(ctx context.Context, instance servicenow.Instance, accessToken string) (servicenow.User, error)
	Probe(ctx context.Context, instance servicenow.Instance, accessToken, path string) (servicenow.ProbeResult, error)
	Revoke(ctx context.Context, instance servicenow.Instance, token string) error
}

// ServiceNowConnectionReconciler keeps each connection's token Secret holding
// a valid access token and reports how that goes in the connection's status.
// AddConnectionController builds and wires it.
type ServiceNowConnectionReconciler struct {
	// Client reads connections and the token Secrets snowauth owns from the
	// manager's cache, and writes.
	client.Client
	// APIReader reads credentials Secrets straight from the API server, so
	// that no Secret snowauth does not own is ever cached.
	APIReader client.Reader
	// Recorder emits Kubernetes Events about connections.
	Recorder events.EventRecorder
	// Tokens talks to ServiceNow.
	Tokens TokenSource
	// Authorization configures the AuthorizationCode grant; nil when the
	// authorization server is off.
	Authorization *Authorization
	// Now and Jitter default to the wall clock and a random jitter.
	Now    func() time.Time
	Jitter Jitter

	// secretMeta caches every Secret's name and resourceVersion: enough to
	// notice a changed credentials Secret without reading it.
	secretMeta cache.Cache
	// written maps a connection to the resourceVersion of the last status
	// this process wrote (see confirmCacheIsCurrent).
	written sync.Map
	// kept holds tokens obtained but not stored yet; held the refresh
	// tokens password logins returned (lockout.go).
	kept keptTokens
	held heldRefreshTokens
	// revocations bounds and remembers the revocations at deletion.
	revocations revocations
}

// +kubebuilder:rbac:groups=servicenow.snowauth.dev,resources=servicenowconnections,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=servicenow.snowauth.dev,resources=servicenowconnections/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=servicenow.snowauth.dev,resources=servicenowconnections/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// scope is what one reconcile learns about a connection on its way.
type scope struct {
	conn *snowv1.ServiceNowConnection
	now  time.Time
	// fresh says conn was read from the API server, not the cache.
	fresh bool
	// secret is the token Secret if it exists and this connection controls
	// it; stored is the token snowauth wrote in it, nil if none. lookedUp
	// says the look-up succeeded.
	secret   *corev1.Secret
	stored   *storedToken
	lookedUp bool
	// creds is the credentials Secret (only its identity until it is read),
	// nil when it does not exist; refresh is the AuthorizationCode grant's
	// refresh-token Secret, nil when there is none; handover a person's
	// authorization to complete.
	creds, refresh *corev1.Secret
	handover       *authserver.Handover
	refreshTaken   bool              // a Secret not the connection's has the refresh-token Secret's name
	jwt            jwtScope          // the JWTBearer grant's signing key
	firstUsed      map[string]string // the token Secret's first-used annotations, once credentials were read (horizons.go)
	// kept says a token obtained earlier waits in memory to be stored;
	// storedKept that this reconcile wrote it to the token Secret; revoked
	// that it revoked the stored access token on request (revoke.go).
	kept, storedKept, revoked bool
	// failure is the latest failure: found by this reconcile, or carried over
	// from status while waiting out a backoff.
	failure *failure
	// wake holds further times to look at the connection again (a link's
	// end, a horizon's warning, a key's rotation).
	wake []time.Time
}

// Reconcile tells one connection's story: gather what is there (the token
// Secret, the credentials), decide whether a token request is due, act
// (request a token and store it), and report: status is written once at the
// end, whatever failed on the way.
func (r *ServiceNowConnectionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	conn := &snowv1.ServiceNowConnection{}
	if err := r.Get(ctx, req.NamespacedName, conn); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if done, res, err := r.finalize(ctx, conn); done || err != nil { // the revoke finalizer (revoke.go)
		return res, err
	}
	s, err := r.reconcileFrom(ctx, conn, false)
	if errors.Is(err, errStaleCache) {
		// The cache had not yet seen this connection's latest status (the
		// one the previous reconcile wrote). Go on from the API server's
		// copy rather than spend a token request on an old view.
		fresh := &snowv1.ServiceNowConnection{}
		if err := r.APIReader.Get(ctx, req.NamespacedName, fresh); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		s, err = r.reconcileFrom(ctx, fresh, true)
	}
	if err != nil {
		// Not a token failure (those are in status): an API error, which
		// controller-runtime retries; a token obtained meanwhile waits in memory.
		return ctrl.Result{}, err
	}
	if s.conn.Spec.Suspend {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: requeueAfter(s.now, timeOf(s.conn.Status.NextRefreshTime), timeOf(s.conn.Status.ExpiresAt), s.wake...)}, nil
}

// reconcileFrom runs the steps on conn and then writes its status, even when
// a step failed: Ready always says what the token Secret holds now.
func (r *ServiceNowConnectionReconciler) reconcileFrom(ctx context.Context, conn *snowv1.ServiceNowConnection, fresh bool) (*scope, error) {
	base := conn.DeepCopy()
	s := &scope{conn: conn, now: r.now(), fresh: fresh, failure: failureFromStatus(conn.Status.Conditions)}
	err := r.steps(ctx, s)
	if errors.Is(err, errStaleCache) {
		return s, err // nothing was done; the caller starts again
	}
	if !s.lookedUp && base.Status.ExpiresAt != nil {
		// The token Secret could not be looked at: the last known token is
		// the best truth there is.
		s.stored = &storedToken{expiry: base.Status.ExpiresAt.Time, instanceURL: base.Status.InstanceURL}
	}
	serr := r.writeStatus(ctx, base, s)
	if serr == nil && s.storedKept {
		// Forgotten only once status records it too: until then the
		// next reconcile stores it again rather than ask ServiceNow.
		r.kept.drop(s.conn.UID)
	}
	return s, errors.Join(err, serr)
}

// steps gathers, decides and acts. A failure is recorded in s and ends the
// chain; any other error is returned.
func (r *ServiceNowConnectionReconciler) steps(ctx context.Context, s *scope) error {
	// Gather, from the caches.
	err := r.lookUpTokenSecret(ctx, s)
	if err != nil {
		return r.fail(ctx, s, err, false)
	}
	if s.conn.Spec.Suspend {
		return nil
	}
	if err = r.grantSteps(ctx, s); err != nil {
		return err
	}
	if err = r.credentialsVersionFromCache(ctx, s); err != nil {
		return err
	}
	s.kept = r.kept.has(s.conn.UID, s.now)
	if done, err := r.revokeRequested(ctx, s); done || err != nil {
		return err
	}

	// Decide.
	why := refreshTrigger(s)
	if why == "" {
		if s.stored != nil {
			// Keep the Secret as snowauth wrote it (a label edited by
			// hand, a changed spec.tokenSecret.labels).
			return r.store(ctx, s, *s.stored, nil)
		}
		return nil
	}

	// Act: read the credentials (the only Secret read from the API server),
	// then store a kept token or ask ServiceNow for a new one.
	if s.creds, err = credentials.Get(ctx, r.APIReader, s.conn); err != nil {
		return err
	}
	c, err := credentials.Parse(s.conn, s.creds, r.Tokens)
	if err == nil {
		err = r.addGrantCredentials(ctx, s, c)
	}
	kept, haveKept := r.kept.get(s.conn.UID, credentialsVersion(s.creds, s.refresh), s.conn.Generation, s.now)
	if err == nil && !haveKept {
		if err := r.confirmCacheIsCurrent(ctx, s); err != nil {
			return err
		}
	}
	logf.FromContext(ctx).V(1).Info("a token request is due", "trigger", why, "kept", haveKept)
	r.markHandled(s)
	switch {
	case err != nil:
		return r.fail(ctx, s, err, true)
	case !haveKept:
		tok, err := r.requestToken(ctx, s, c)
		if err != nil {
			return r.fail(ctx, s, err, true)
		}
		kept = keptToken{
			credentialsVersion: credentialsVersion(s.creds, s.refresh), generation: s.conn.Generation,
			accessToken: tok.AccessToken, instanceURL: c.Instance.String(),
			obtained: s.now, expiry: tok.Expiry.Truncate(time.Second),
		}
		r.kept.put(s.conn.UID, kept, s.now)
	}
	return r.store(ctx, s, storedToken{accessToken: kept.accessToken, expiry: kept.expiry, instanceURL: kept.instanceURL}, &kept)
}

// store writes tok to the token Secret. When tok is new (obtained is set),
// it also plans the next refresh and reports the success; a refused write
// becomes a failure with the token still kept in memory.
func (r *ServiceNowConnectionReconciler) store(ctx context.Context, s *scope, tok storedToken, obtained *keptToken) error {
	if err := r.writeTokenSecret(ctx, s, tok, obtained == nil); err != nil {
		if obtained == nil {
			return err
		}
		return r.fail(ctx, s, writeFailure(s.conn.TokenSecretName(), tok.accessToken, err), true)
	}
	if obtained == nil {
		return nil
	}
	s.storedKept = true
	st := &s.conn.Status
	firstToken, recovered := st.LastRefreshTime == nil, st.ConsecutiveFailures > 0
	st.LastRefreshTime = &metav1.Time{Time: obtained.obtained.Truncate(time.Second)}
	st.ConsecutiveFailures, st.PasswordRejections = 0, 0
	next := refreshTime(obtained.obtained, tok.expiry, refreshBefore(s.conn), r.jitter())
	st.NextRefreshTime = &metav1.Time{Time: next.Truncate(time.Second)}
	s.failure = nil
	expires := tok.expiry.UTC().Format(time.RFC3339)
	switch {
	case firstToken:
		r.event(s.conn, corev1.EventTypeNormal, "TokenIssued", "RequestToken",
			"obtained a first token from %s; it expires at %s", tok.instanceURL, expires)
	case recovered:
		r.event(s.conn, corev1.EventTypeNormal, "TokenRefreshed", "RequestToken",
			"stored a token from %s after earlier failures; it expires at %s", tok.instanceURL, expires)
	}
	r.probe(ctx, s, tok) // spec.probe: what the token may do; never a token failure
	return nil
}

// fail records a step's error as the connection's failure, with a Warning
// Event. When counted (a request was due), it also counts the failure and
// schedules the retry. Errors that are not token failures pass through.
func (r *ServiceNowConnectionReconciler) fail(ctx context.Context, s *scope, err error, counted bool) error {
	f := classify(err)
	if f == nil {
		return err
	}
	s.failure = f
	st := &s.conn.Status
	if !counted {
		return nil
	}
	st.ConsecutiveFailures++
	st.LastFailureTime = &metav1.Time{Time: s.now.Truncate(time.Second)}
	delay := retryDelay(f, st.ConsecutiveFailures, s.now, s.storedExpiry(), r.jitter())
	// Rounded up: status keeps whole seconds, and a retry must not come
	// before a server's Retry-After.
	st.NextRefreshTime = &metav1.Time{Time: s.now.Add(delay + time.Second - 1).Truncate(time.Second)}
	countRejection(s, f) // no lock-outs: a rejected password is not sent again and again
	logf.FromContext(ctx).Info("token request failed", "reason", f.reason, "message", f.message,
		"consecutiveFailures", st.ConsecutiveFailures, "nextRefreshTime", st.NextRefreshTime)
	r.event(s.conn, corev1.EventTypeWarning, f.reason, "RequestToken", "%s", f.message)
	return nil
}
