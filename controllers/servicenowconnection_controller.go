package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// TokenSource obtains tokens from ServiceNow. *servicenow.Client implements
// it; the reconciler needs nothing else from ServiceNow.
type TokenSource interface {
	ResolveInstance(instance string) (*url.URL, error)
	Token(ctx context.Context, req servicenow.TokenRequest) (*servicenow.Token, error)
}

// annotationTokenSHA256 on the token Secret holds the SHA-256 of the
// access_token snowauth wrote, so an access_token edited by hand is noticed
// and replaced. A hash of a random token reveals nothing about it.
const annotationTokenSHA256 = "servicenow.snowauth.dev/token-sha256"

// ServiceNowConnectionReconciler keeps each connection's token Secret holding
// a valid access token and reports how that goes in the connection's status.
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
	// Authorization makes start links for the AuthorizationCode grant; nil
	// when the manager's authorization server is off.
	Authorization *authserver.Links
	// secretMeta caches every Secret's name and resourceVersion (set up by
	// SetupWithManager): enough to notice a changed credentials Secret
	// without reading it.
	secretMeta cache.Cache
	// written maps a connection's name to the resourceVersion of the last
	// status this process wrote, so a cached connection that shows it needs
	// no check against the API server before a token request.
	written sync.Map
	// Now and Jitter default to the wall clock and a random jitter.
	Now    func() time.Time
	Jitter Jitter
}

// +kubebuilder:rbac:groups=servicenow.snowauth.dev,resources=servicenowconnections,verbs=get;list;watch
// +kubebuilder:rbac:groups=servicenow.snowauth.dev,resources=servicenowconnections/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// scope is what one reconcile learns about a connection on its way.
type scope struct {
	conn *snowv1.ServiceNowConnection
	now  time.Time
	// fresh says conn was read from the API server, not the cache.
	fresh bool
	// creds is the credentials Secret, nil when it does not exist.
	creds *corev1.Secret
	// refresh is the refresh-token Secret of the AuthorizationCode grant,
	// nil when there is none.
	refresh *corev1.Secret
	// wake holds further times to look at the connection again (renewing an
	// authorization link, warning before a refresh token expires).
	wake []time.Time
	// secret is the token Secret if it exists and this connection controls
	// it; nil otherwise.
	secret *corev1.Secret
	// token is the access token in secret when it is the one snowauth wrote.
	token string
	// failure is the latest failure: found by this reconcile, or carried over
	// from status while waiting out a backoff.
	failure *failure
}

// Reconcile tells one story: look at the token Secret and the credentials,
// decide whether a token request is due, make it, store the token, and
// write status once at the end.
func (r *ServiceNowConnectionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	conn := &snowv1.ServiceNowConnection{}
	if err := r.Get(ctx, req.NamespacedName, conn); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
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
		return ctrl.Result{}, err
	}
	if s.conn.Spec.Suspend {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: requeueAfter(s.now, timeOf(s.conn.Status.NextRefreshTime), timeOf(s.conn.Status.ExpiresAt), s.wake...)}, nil
}

// errStaleCache says the cached connection is older than the API server's.
var errStaleCache = errors.New("the cached connection is stale")

// reconcileFrom reconciles conn and writes its status. fresh says conn was
// read from the API server rather than the cache.
func (r *ServiceNowConnectionReconciler) reconcileFrom(ctx context.Context, conn *snowv1.ServiceNowConnection, fresh bool) (*scope, error) {
	base := conn.DeepCopy()
	s := &scope{conn: conn, now: r.now(), fresh: fresh, failure: failureFromStatus(conn.Status.Conditions)}
	if err := r.reconcile(ctx, s); err != nil {
		// Not a token failure (those are recorded in status): an API error
		// or a stale cache. controller-runtime retries API errors with its
		// own backoff; conflicts are retried the same way, no string
		// matching needed.
		return s, err
	}
	return s, r.patchStatus(ctx, base, s)
}

// reconcile runs the steps in order: look at the token Secret, read the
// credentials, decide whether a token request is due, and make it. A
// *failure from a step is recorded in s (it ends the chain); any other
// error is returned.
func (r *ServiceNowConnectionReconciler) reconcile(ctx context.Context, s *scope) error {
	if err := r.lookUpTokenSecret(ctx, s); err != nil {
		return r.recordFailure(ctx, s, err, false)
	}
	if s.conn.Spec.Suspend {
		return nil
	}
	if err := r.readRefreshToken(ctx, s); err != nil {
		return err
	}
	// Most reconciles find nothing due (a watch event about snowauth's own
	// write, say): decide that from the credentials Secret's metadata in the
	// cache and read the Secret itself only when a request may be made, or
	// when a failure found in the credentials might have been resolved.
	if known, err := r.credentialsVersionFromCache(ctx, s); err != nil {
		return err
	} else if known && (s.failure == nil || !isPrecondition(s.failure.reason)) && refreshTrigger(s, true) == "" {
		if s.token != "" {
			// Keep the Secret as snowauth wrote it (a label edited by hand,
			// a changed spec.tokenSecret.labels).
			return r.writeTokenSecret(ctx, s, s.token)
		}
		return nil
	}
	if err := r.readCredentials(ctx, s); err != nil {
		return err
	}
	req, reqErr := r.tokenRequest(s)
	trigger := refreshTrigger(s, reqErr == nil)
	if trigger == "" {
		if reqErr != nil {
			// Not due, but say now that the next request cannot work.
			return r.recordFailure(ctx, s, reqErr, false)
		}
		// Nothing is due: keep the Secret as snowauth wrote it (a label
		// edited by hand, a changed spec.tokenSecret.labels) and stop.
		if s.token != "" {
			return r.writeTokenSecret(ctx, s, s.token)
		}
		return nil
	}
	if err := r.confirmCacheIsCurrent(ctx, s); err != nil {
		return err
	}
	logf.FromContext(ctx).V(1).Info("requesting a token", "trigger", trigger)
	r.markHandled(s)
	if reqErr != nil {
		return r.recordFailure(ctx, s, reqErr, true)
	}
	return r.refresh(ctx, s, req)
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

// refresh asks ServiceNow for a token and stores it: in the token Secret,
// and its expiry and next refresh time in status.
func (r *ServiceNowConnectionReconciler) refresh(ctx context.Context, s *scope, req servicenow.TokenRequest) error {
	started := time.Now()
	tok, err := r.Tokens.Token(ctx, req)
	observeTokenRequest(string(req.Grant), time.Since(started), classify(err))
	if err != nil {
		if s.conn.Spec.GrantType == snowv1.GrantAuthorizationCode && servicenow.KindOf(err) == servicenow.KindAuthenticationFailed {
			// After an authorization, a rejected refresh most likely means
			// the refresh token expired or was revoked: ask for a new one.
			err = needsPerson(snowv1.ReasonAuthorizationRequired,
				"ServiceNow rejected the stored refresh token (%s): it expired or was revoked; authorise again from the link in status.authorizationURL", err.Error())
		}
		return r.recordFailure(ctx, s, err, true)
	}
	instanceURL := req.InstanceURL.String()
	firstToken := s.conn.Status.LastRefreshTime == nil
	recovered := s.conn.Status.ConsecutiveFailures > 0
	s.conn.Status.InstanceURL = instanceURL
	s.conn.Status.ExpiresAt = &metav1.Time{Time: tok.Expiry.Truncate(time.Second)}
	s.conn.Status.LastRefreshTime = &metav1.Time{Time: s.now.Truncate(time.Second)}
	s.conn.Status.ConsecutiveFailures = 0
	var refreshBefore *time.Duration
	if rb := s.conn.Spec.RefreshBefore; rb != nil {
		refreshBefore = &rb.Duration
	}
	next := refreshTime(s.now, s.conn.Status.ExpiresAt.Time, refreshBefore, r.jitter())
	s.conn.Status.NextRefreshTime = &metav1.Time{Time: next.Truncate(time.Second)}
	s.failure = nil
	if err := r.writeTokenSecret(ctx, s, tok.AccessToken); err != nil {
		return err
	}
	switch {
	case firstToken:
		r.event(s.conn, corev1.EventTypeNormal, "TokenIssued", "RequestToken",
			"obtained a first token from %s; it expires at %s", instanceURL, formatTime(s.conn.Status.ExpiresAt))
	case recovered:
		r.event(s.conn, corev1.EventTypeNormal, "TokenRefreshed", "RequestToken",
			"obtained a token from %s after earlier failures; it expires at %s", instanceURL, formatTime(s.conn.Status.ExpiresAt))
	}
	return nil
}

// lookUpTokenSecret finds the token Secret. A Secret of that name that this
// connection does not control is a conflict: snowauth never takes over a
// Secret it did not create.
func (r *ServiceNowConnectionReconciler) lookUpTokenSecret(ctx context.Context, s *scope) error {
	key := types.NamespacedName{Namespace: s.conn.Namespace, Name: s.conn.TokenSecretName()}
	secret := &corev1.Secret{}
	err := r.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		// The cache holds only Secrets labelled as snowauth's. When the
		// metadata cache knows a Secret of that name, ask the API server
		// whose it is (an unlabelled one, or one snowauth just created that
		// the cache has not seen yet).
		err = r.secretExists(ctx, key)
		if err == nil {
			err = r.APIReader.Get(ctx, key, secret)
		}
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case !metav1.IsControlledBy(secret, s.conn):
		return needsPerson(snowv1.ReasonSecretConflict,
			"Secret %s already exists and is not controlled by this connection; snowauth leaves it alone: delete it or set spec.tokenSecret.name", key.Name)
	}
	s.secret = secret
	// The token is snowauth's only if it is the one whose hash snowauth
	// recorded, and status still says when it expires.
	tok := string(secret.Data[snowv1.TokenKeyAccessToken])
	if tok != "" && secret.Annotations[annotationTokenSHA256] == fingerprint(tok) && s.conn.Status.ExpiresAt != nil {
		s.token = tok
	}
	return nil
}

// credentialsVersionFromCache sets s.creds to the credentials Secret's
// identity (no data) as the metadata cache knows it, or nil when it does not
// exist. It returns false when there is no metadata cache to ask.
func (r *ServiceNowConnectionReconciler) credentialsVersionFromCache(ctx context.Context, s *scope) (bool, error) {
	if r.secretMeta == nil {
		return false, nil
	}
	meta := secretMetadata()
	err := r.secretMeta.Get(ctx, types.NamespacedName{Namespace: s.conn.Namespace, Name: s.conn.Spec.CredentialsSecretRef.Name}, meta)
	switch {
	case apierrors.IsNotFound(err):
		s.creds = nil
	case err != nil:
		return false, err
	default:
		s.creds = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: meta.Namespace, Name: meta.Name, ResourceVersion: meta.ResourceVersion}}
	}
	return true, nil
}

// secretExists returns nil when the metadata cache knows Secret key (or
// there is no metadata cache), NotFound otherwise.
func (r *ServiceNowConnectionReconciler) secretExists(ctx context.Context, key types.NamespacedName) error {
	if r.secretMeta == nil {
		return nil
	}
	return r.secretMeta.Get(ctx, key, secretMetadata())
}

// readCredentials reads the credentials Secret from the API server (never
// from a cache: snowauth does not keep other Secrets in memory).
func (r *ServiceNowConnectionReconciler) readCredentials(ctx context.Context, s *scope) error {
	creds := &corev1.Secret{}
	key := types.NamespacedName{Namespace: s.conn.Namespace, Name: s.conn.Spec.CredentialsSecretRef.Name}
	if err := r.APIReader.Get(ctx, key, creds); err != nil {
		s.creds = nil
		return client.IgnoreNotFound(err)
	}
	s.creds = creds
	return nil
}

// readRefreshToken reads the refresh-token Secret of the AuthorizationCode
// grant. It is snowauth's own (labelled), so it comes from the cache.
func (r *ServiceNowConnectionReconciler) readRefreshToken(ctx context.Context, s *scope) error {
	s.refresh = nil
	if s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode {
		return nil
	}
	refresh := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: s.conn.Namespace, Name: s.conn.RefreshTokenSecretName()}, refresh)
	if err == nil && metav1.IsControlledBy(refresh, s.conn) {
		s.refresh = refresh
	}
	return client.IgnoreNotFound(err)
}

// credentialsVersion identifies the inputs a token request is made from:
// the credentials Secret's resourceVersion, and for the AuthorizationCode
// grant the refresh-token Secret's too (a new authorization is a change).
func credentialsVersion(s *scope) string {
	if s.creds == nil {
		return ""
	}
	v := s.creds.ResourceVersion
	if s.refresh != nil {
		v += "/" + s.refresh.ResourceVersion
	}
	return v
}

// refreshTrigger says why a token request is due now, or "" if none is.
// ready says whether the credentials would make a valid request. Changes a
// person makes (spec, credentials, a refresh request) are due at once, even
// during a backoff; so is fixing what blocked the last request. The token
// Secret going missing is due too, unless ServiceNow itself is being waited
// out or the request cannot work.
func refreshTrigger(s *scope, ready bool) string {
	st := s.conn.Status
	credsVersion := credentialsVersion(s)
	requested := s.conn.Annotations[snowv1.AnnotationRefreshRequestedAt]
	blocked := s.failure != nil && isPrecondition(s.failure.reason)
	waiting := st.NextRefreshTime != nil && s.now.Before(st.NextRefreshTime.Time)
	backingOff := waiting && st.ConsecutiveFailures > 0 && s.failure != nil && !blocked
	switch {
	case s.conn.Generation != st.ObservedGeneration:
		return "the spec changed"
	case credsVersion != st.CredentialsResourceVersion:
		return "the credentials Secret changed"
	case requested != "" && requested != st.LastHandledRefreshRequest:
		return "a refresh was requested"
	case !ready:
		if !waiting {
			return "the slow retry is due"
		}
		return ""
	case blocked:
		return s.failure.reason + " was resolved"
	case s.token == "" && !backingOff:
		return "the token Secret holds no token"
	case !waiting:
		return "the token is due for refresh"
	}
	return ""
}

// isPrecondition says whether a failure reason is one snowauth finds before
// asking ServiceNow anything: re-checking it costs nothing, so it is
// re-checked on every reconcile rather than backed off.
func isPrecondition(reason string) bool {
	switch reason {
	case snowv1.ReasonCredentialsNotFound, snowv1.ReasonCredentialsInvalid, snowv1.ReasonSecretConflict,
		string(servicenow.KindInvalidInstance), snowv1.ReasonAuthorizationRequired, snowv1.ReasonAuthorizationServerDisabled:
		return true
	}
	return false
}

// markHandled records the inputs this token request answers, so the same
// spec, credentials and refresh request do not trigger another.
func (r *ServiceNowConnectionReconciler) markHandled(s *scope) {
	st := &s.conn.Status
	if v := credentialsVersion(s); st.CredentialsResourceVersion != "" && v != "" && st.CredentialsResourceVersion != v {
		r.event(s.conn, corev1.EventTypeNormal, "CredentialsChanged", "ReadCredentials",
			"credentials of Secret %s changed; requesting a new token", s.creds.Name)
	}
	st.CredentialsResourceVersion = credentialsVersion(s)
	st.LastHandledRefreshRequest = s.conn.Annotations[snowv1.AnnotationRefreshRequestedAt]
}

// tokenRequest builds the token request from the credentials Secret: the
// keys the grant needs, and the instance URL, resolved and allowlisted. Its
// errors are failures a person must fix; nothing is sent anywhere.
func (r *ServiceNowConnectionReconciler) tokenRequest(s *scope) (servicenow.TokenRequest, error) {
	name := s.conn.Spec.CredentialsSecretRef.Name
	if s.creds == nil {
		return servicenow.TokenRequest{}, needsPerson(snowv1.ReasonCredentialsNotFound,
			"credentials Secret %s not found in namespace %s", name, s.conn.Namespace)
	}
	grant, keys := grantFor(s.conn.Spec.GrantType)
	values := map[string]string{}
	for _, k := range keys {
		v, ok := s.creds.Data[k]
		if !ok {
			return servicenow.TokenRequest{}, needsPerson(snowv1.ReasonCredentialsInvalid,
				"credentials Secret %s has no key %q, which the %s grant needs", name, k, s.conn.Spec.GrantType)
		}
		// A trailing newline is what `echo` and most editors add; it is
		// never part of an instance, ID, secret or password.
		values[k] = strings.TrimRight(string(v), "\r\n")
		if strings.TrimSpace(values[k]) == "" {
			return servicenow.TokenRequest{}, needsPerson(snowv1.ReasonCredentialsInvalid,
				"key %q of credentials Secret %s is empty", k, name)
		}
	}
	instance, err := r.Tokens.ResolveInstance(strings.TrimSpace(values[snowv1.CredentialsKeyInstance]))
	if err != nil {
		return servicenow.TokenRequest{}, err
	}
	if s.conn.Spec.GrantType == snowv1.GrantAuthorizationCode {
		if r.Authorization == nil {
			return servicenow.TokenRequest{}, needsPerson(snowv1.ReasonAuthorizationServerDisabled,
				"the AuthorizationCode grant needs the manager's authorization server: start the manager with --authorization-external-url")
		}
		if s.refresh == nil || len(s.refresh.Data[authserver.RefreshTokenKey]) == 0 {
			return servicenow.TokenRequest{}, needsPerson(snowv1.ReasonAuthorizationRequired,
				"nobody has authorised snowauth for this connection yet: open the link in status.authorizationURL (kubectl servicenow authorize %s)", s.conn.Name)
		}
		values[snowv1.CredentialsKeyRefreshToken] = string(s.refresh.Data[authserver.RefreshTokenKey])
	}
	return servicenow.TokenRequest{
		InstanceURL: instance,
		Grant:       grant,
		Scopes:      s.conn.Spec.Scopes,
		Credentials: servicenow.Credentials{
			ClientID:     strings.TrimSpace(values[snowv1.CredentialsKeyClientID]),
			ClientSecret: values[snowv1.CredentialsKeyClientSecret],
			Username:     strings.TrimSpace(values[snowv1.CredentialsKeyUsername]),
			Password:     values[snowv1.CredentialsKeyPassword],
			RefreshToken: values[snowv1.CredentialsKeyRefreshToken],
		},
	}, nil
}

// grantFor maps the API's grant type to the OAuth grant and the credentials
// Secret keys it needs.
func grantFor(g snowv1.GrantType) (servicenow.Grant, []string) {
	keys := []string{snowv1.CredentialsKeyInstance, snowv1.CredentialsKeyClientID, snowv1.CredentialsKeyClientSecret}
	switch g {
	case snowv1.GrantPassword:
		return servicenow.GrantPassword, append(keys, snowv1.CredentialsKeyUsername, snowv1.CredentialsKeyPassword)
	case snowv1.GrantRefreshToken:
		return servicenow.GrantRefreshToken, append(keys, snowv1.CredentialsKeyRefreshToken)
	case snowv1.GrantAuthorizationCode:
		// The refresh token comes from the refresh-token Secret.
		return servicenow.GrantRefreshToken, keys
	default:
		return servicenow.GrantClientCredentials, keys
	}
}

// recordFailure turns a step's error into the connection's failure. When
// the failure ended a token request (counted), it also schedules the retry.
// Errors that are not token failures pass through.
func (r *ServiceNowConnectionReconciler) recordFailure(ctx context.Context, s *scope, err error, counted bool) error {
	f := classify(err)
	if f == nil {
		return err
	}
	s.failure = f
	if !counted {
		return nil
	}
	st := &s.conn.Status
	st.ConsecutiveFailures++
	st.LastFailureTime = &metav1.Time{Time: s.now.Truncate(time.Second)}
	delay := retryDelay(f, st.ConsecutiveFailures, s.now, timeOf(st.ExpiresAt), r.jitter())
	// Rounded up: status keeps whole seconds, and a retry must not come
	// before a server's Retry-After.
	st.NextRefreshTime = &metav1.Time{Time: s.now.Add(delay + time.Second - 1).Truncate(time.Second)}
	logf.FromContext(ctx).Info("token request failed", "reason", f.reason, "message", f.message,
		"consecutiveFailures", st.ConsecutiveFailures, "retryIn", delay.Round(time.Second).String())
	r.event(s.conn, corev1.EventTypeWarning, f.reason, "RequestToken", "%s", f.message)
	return nil
}

// writeTokenSecret makes the token Secret hold accessToken with the expiry
// and instance in status, the operator's labels and the user's. It writes
// nothing when the Secret already says all that.
func (r *ServiceNowConnectionReconciler) writeTokenSecret(ctx context.Context, s *scope, accessToken string) error {
	st := s.conn.Status
	secret := s.secret
	if secret == nil {
		secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.conn.Namespace, Name: s.conn.TokenSecretName()}}
	}
	desired := secret.DeepCopy()
	desired.Type = corev1.SecretTypeOpaque
	desired.Data = map[string][]byte{
		snowv1.TokenKeyAccessToken: []byte(accessToken),
		snowv1.TokenKeyTokenType:   []byte("Bearer"),
		snowv1.TokenKeyExpiresAt:   []byte(formatTime(st.ExpiresAt)),
		snowv1.TokenKeyInstanceURL: []byte(st.InstanceURL),
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
	desired.Annotations[annotationTokenSHA256] = fingerprint(accessToken)
	if err := controllerutil.SetControllerReference(s.conn, desired, r.Scheme()); err != nil {
		return err
	}

	if s.secret == nil {
		if err := r.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Created by someone else since the look-up: re-examine it.
				return fmt.Errorf("token Secret %s appeared while snowauth was creating it: %w", desired.Name, err)
			}
			return err
		}
	} else if !equality.Semantic.DeepEqual(secret.Data, desired.Data) ||
		!equality.Semantic.DeepEqual(secret.Labels, desired.Labels) ||
		!equality.Semantic.DeepEqual(secret.Annotations, desired.Annotations) ||
		!slices.EqualFunc(secret.OwnerReferences, desired.OwnerReferences, func(a, b metav1.OwnerReference) bool {
			return equality.Semantic.DeepEqual(a, b)
		}) {
		if err := r.Update(ctx, desired); err != nil {
			return err
		}
	}
	s.secret, s.token = desired, accessToken
	s.conn.Status.TokenSecretName = desired.Name
	return nil
}

// patchStatus computes the conditions and writes status once, and only if
// something changed: an idle reconcile makes no API write.
func (r *ServiceNowConnectionReconciler) patchStatus(ctx context.Context, base *snowv1.ServiceNowConnection, s *scope) error {
	conn := s.conn
	var expiry *time.Time
	if s.token != "" {
		expiry = timeOf(conn.Status.ExpiresAt)
	}
	if s.secret != nil {
		conn.Status.TokenSecretName = s.secret.Name
	}
	reauthorize := r.authorizationStatus(s)
	setConditions(&conn.Status.Conditions, conditions(statusInput{
		now:         s.now,
		generation:  conn.Generation,
		suspended:   conn.Spec.Suspend,
		secretName:  conn.TokenSecretName(),
		expiry:      expiry,
		failure:     s.failure,
		reauthorize: reauthorize,
	}))
	conn.Status.ObservedGeneration = conn.Generation
	if equality.Semantic.DeepEqual(base.Status, conn.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, conn, client.MergeFrom(base)); err != nil {
		return err
	}
	r.written.Store(client.ObjectKeyFromObject(conn), conn.ResourceVersion)
	return nil
}

// Defaults of spec.authorizationCode.
const (
	defaultRefreshTokenLifespan = 2400 * time.Hour // ServiceNow's 100 days
	defaultReauthorizeBefore    = 14 * 24 * time.Hour
)

// authorizationStatus keeps the AuthorizationCode grant's status current:
// refreshTokenExpiresAt, and a start link in authorizationURL while a person
// must authorise (no usable refresh token, or one that expires soon). It
// returns the RefreshTokenExpiring message, "" when the token is not close
// to expiring.
func (r *ServiceNowConnectionReconciler) authorizationStatus(s *scope) string {
	st := &s.conn.Status
	if s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode || r.Authorization == nil {
		st.AuthorizationURL, st.RefreshTokenExpiresAt = "", nil
		return ""
	}
	lifespan, before := defaultRefreshTokenLifespan, defaultReauthorizeBefore
	if a := s.conn.Spec.AuthorizationCode; a != nil {
		if a.RefreshTokenLifespan != nil {
			lifespan = a.RefreshTokenLifespan.Duration
		}
		if a.ReauthorizeBefore != nil {
			before = a.ReauthorizeBefore.Duration
		}
	}
	st.RefreshTokenExpiresAt = nil
	var reauthorize string
	if s.refresh != nil {
		if issued, err := time.Parse(time.RFC3339, string(s.refresh.Data[authserver.IssuedAtKey])); err == nil {
			expires := issued.Add(lifespan)
			st.RefreshTokenExpiresAt = &metav1.Time{Time: expires}
			warnAt := expires.Add(-before)
			if s.now.Before(warnAt) {
				s.wake = append(s.wake, warnAt)
			} else {
				reauthorize = fmt.Sprintf("the refresh token stops working at %s: authorise again from the link in status.authorizationURL before then",
					expires.UTC().Format(time.RFC3339))
			}
		}
	}

	needed := reauthorize != "" || s.failure != nil && s.failure.reason == snowv1.ReasonAuthorizationRequired
	if !needed || s.creds == nil {
		st.AuthorizationURL = ""
		return reauthorize
	}
	renew, current := r.Authorization.Current(st.AuthorizationURL, s.conn, s.creds.ResourceVersion, s.now)
	if !current {
		st.AuthorizationURL, _ = r.Authorization.StartURL(s.conn, s.creds.ResourceVersion, s.now)
		renew, _ = r.Authorization.Current(st.AuthorizationURL, s.conn, s.creds.ResourceVersion, s.now)
	}
	s.wake = append(s.wake, renew)
	return reauthorize
}

func (r *ServiceNowConnectionReconciler) event(conn *snowv1.ServiceNowConnection, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(conn, nil, typ, reason, action, note, args...)
	}
}

func (r *ServiceNowConnectionReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *ServiceNowConnectionReconciler) jitter() Jitter {
	if r.Jitter != nil {
		return r.Jitter
	}
	return randomJitter
}

// fingerprint is the hex SHA-256 of a token.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}

func formatTime(t *metav1.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
