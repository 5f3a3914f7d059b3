package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// Revocation. ServiceNow's oauth_revoke_token.do marks a token expired
// (servicenow.Client.Revoke). snowauth revokes what it obtained itself, at
// three moments:
//   - a connection with spec.revokeOnDelete is deleted: the finalizer
//     servicenow.snowauth.dev/revoke holds it until the access token and the
//     AuthorizationCode grant's refresh token are revoked, retried with a
//     backoff for at most --revoke-on-delete-timeout after the deletion
//     (finalize);
//   - a person authorised anew: the refresh token the new one replaces, once
//     and best effort (revokeSuperseded);
//   - a revoke request (the revoke-requested-at annotation, `kubectl
//     servicenow revoke`): the access token, after which the decision asks
//     for a new one at once (revokeRequested).
//
// A refresh token given in the credentials Secret (the RefreshToken grant)
// is never revoked: it is the giver's, in a Secret snowauth never writes,
// other connections may use it, and revoking it would break them for good.
// Each revocation is an Event, TokenRevoked (Normal), RevocationFailed or
// RevocationSkipped (Warning), naming the kind of token and where it was
// kept, never the token. An access token counts as revoked once the instance
// no longer takes it, not when the revocation was answered.

// DefaultRevokeTimeout is how long after a connection with
// spec.revokeOnDelete was deleted snowauth keeps trying to revoke its
// tokens before it removes the finalizer anyway (--revoke-on-delete-timeout).
const DefaultRevokeTimeout = 2 * time.Minute

// lateAttempt bounds the one attempt made for a connection whose bound
// passed before snowauth saw it (the manager was not running): it must not
// hold up the deletion much longer.
const lateAttempt = 5 * time.Second

// heldToken is a token snowauth holds for a connection.
type heldToken struct {
	kind, where, value string
}

// revocations is the reconciler's part in revocations at deletion: the
// bound after the deletion (zero: DefaultRevokeTimeout) and what this
// process revoked already, so that a retry revokes only what failed.
type revocations struct {
	timeout time.Duration
	done    sync.Map // "<connection UID>/<kind>" -> true
}

func (v *revocations) revoked(conn *snowv1.ServiceNowConnection, kind string) bool {
	_, ok := v.done.Load(string(conn.UID) + "/" + kind)
	return ok
}

func (v *revocations) mark(conn *snowv1.ServiceNowConnection, kind string) {
	v.done.Store(string(conn.UID)+"/"+kind, true)
}

func (v *revocations) forget(conn *snowv1.ServiceNowConnection) {
	for _, kind := range []string{kindAccessToken, kindRefreshToken} {
		v.done.Delete(string(conn.UID) + "/" + kind)
	}
}

// finalize keeps the revoke finalizer in step with spec.revokeOnDelete and
// finishes a deleted connection. done says the reconcile ends here: a
// deleted connection gets no new token.
func (r *ServiceNowConnectionReconciler) finalize(ctx context.Context, conn *snowv1.ServiceNowConnection) (done bool, res ctrl.Result, err error) {
	has := controllerutil.ContainsFinalizer(conn, snowv1.FinalizerRevoke)
	switch deleting := !conn.DeletionTimestamp.IsZero(); {
	case deleting && has && conn.Spec.RevokeOnDelete:
		res, err = r.revokeOnDelete(ctx, conn)
		return true, res, err
	case deleting && has:
		return true, ctrl.Result{}, r.setFinalizer(ctx, conn, false)
	case deleting:
		return true, ctrl.Result{}, nil
	case has != conn.Spec.RevokeOnDelete:
		return false, ctrl.Result{}, r.setFinalizer(ctx, conn, conn.Spec.RevokeOnDelete)
	}
	return false, ctrl.Result{}, nil
}

// setFinalizer adds or removes the revoke finalizer with a merge patch of
// the finalizers alone (the cached connection lacks most labels and
// annotations: an update would erase them), refused if the connection
// changed meanwhile.
func (r *ServiceNowConnectionReconciler) setFinalizer(ctx context.Context, conn *snowv1.ServiceNowConnection, on bool) error {
	base := conn.DeepCopy()
	if on {
		controllerutil.AddFinalizer(conn, snowv1.FinalizerRevoke)
	} else {
		controllerutil.RemoveFinalizer(conn, snowv1.FinalizerRevoke)
	}
	return client.IgnoreNotFound(r.Patch(ctx, conn, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})))
}

// revokeOnDelete revokes the tokens of a deleted connection and removes the
// finalizer once they are revoked, once what failed cannot succeed by
// retrying, or once the bound after the deletion has passed; until then a
// failure is retried with a backoff. Past the bound (a manager that was not
// running) it makes one quick attempt.
func (r *ServiceNowConnectionReconciler) revokeOnDelete(ctx context.Context, conn *snowv1.ServiceNowConnection) (ctrl.Result, error) {
	s := &scope{conn: conn, now: r.now()}
	timeout := r.revocations.timeout
	if timeout <= 0 {
		timeout = DefaultRevokeTimeout
	}
	bound := conn.DeletionTimestamp.Add(timeout)
	late := !s.now.Before(bound)
	deadline := bound
	if late {
		deadline = s.now.Add(lateAttempt)
	}
	attempt, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	tokens, err := r.heldTokens(ctx, s)
	instance, ierr := r.Tokens.ResolveInstance(conn.Status.InstanceURL)
	var failed []string
	retry := false
	switch {
	case err != nil && !late:
		return ctrl.Result{}, err
	case err != nil:
		failed = append(failed, fmt.Sprintf("the tokens (they could not be read: %s)", apiMessage(err, "")))
	case s.secret == nil && conn.Status.ExpiresAt != nil && s.now.Before(conn.Status.ExpiresAt.Time):
		// A foreground deletion (kubectl --cascade=foreground, Argo CD's
		// default prune) deletes the owned Secrets first.
		failed = append(failed, fmt.Sprintf("the access token (Secret %s was deleted before the connection, as a foreground "+
			"deletion does: delete connections with background propagation)", conn.TokenSecretName()))
	}
	for _, t := range tokens {
		if r.revocations.revoked(conn, t.kind) {
			continue
		}
		err := ierr
		if err == nil {
			err = r.revoke(attempt, s, instance, t, false, "")
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("the %s in %s (%s)", t.kind, t.where, err))
			retry = retry || servicenow.KindOf(err).Retryable()
			continue
		}
		r.revocations.mark(conn, t.kind)
	}
	if len(failed) > 0 && retry && !late {
		elapsed := s.now.Sub(conn.DeletionTimestamp.Time)
		delay := min(max(minDelay, elapsed/2), 30*time.Second, bound.Sub(s.now))
		logf.FromContext(ctx).Info("revocation failed; retrying before the connection goes", "failed", strings.Join(failed, "; "),
			"retryIn", delay, "until", bound)
		return ctrl.Result{RequeueAfter: delay}, nil
	}
	if len(failed) > 0 {
		why := "retrying cannot help"
		if late {
			why = fmt.Sprintf("the %s after the deletion passed (--revoke-on-delete-timeout)", timeout)
		}
		r.event(conn, corev1.EventTypeWarning, snowv1.ReasonRevocationFailed, "Revoke",
			"could not revoke %s; removed finalizer %s, since %s: what was not revoked stays valid until it expires "+
				"(revoke it in System OAuth > Manage Tokens)", strings.Join(failed, "; "), snowv1.FinalizerRevoke, why)
	}
	r.revocations.forget(conn)
	r.kept.drop(conn.UID)
	r.held.drop(conn.UID)
	return ctrl.Result{}, r.setFinalizer(ctx, conn, false)
}

// The kinds of token snowauth revokes, as Events name them.
const (
	kindAccessToken  = "access token"
	kindRefreshToken = "refresh token"
)

// heldTokens lists the valid tokens snowauth holds for s.conn: the access
// token it wrote to the token Secret (not one edited in by hand) and the
// AuthorizationCode grant's refresh token.
func (r *ServiceNowConnectionReconciler) heldTokens(ctx context.Context, s *scope) ([]heldToken, error) {
	err := r.lookUpTokenSecret(ctx, s)
	if classify(err) == nil && err != nil {
		return nil, err // a Secret in the way (a failure) holds no token of snowauth's
	}
	out := accessToken(s)
	if s.conn.Spec.GrantType == snowv1.GrantAuthorizationCode {
		if err := r.lookUpRefreshSecret(ctx, s); err != nil {
			return nil, err
		}
		if s.refresh != nil && len(s.refresh.Data[snowv1.AuthorizationKeyRefreshToken]) > 0 {
			out = append(out, heldToken{kind: kindRefreshToken, where: "Secret " + s.conn.RefreshTokenSecretName(),
				value: string(s.refresh.Data[snowv1.AuthorizationKeyRefreshToken])})
		}
	}
	if rt, ok := r.held.any(s.conn.UID, s.now); ok && s.conn.Spec.GrantType == snowv1.GrantPassword {
		out = append(out, heldToken{kind: kindRefreshToken, where: "the manager's memory (a password login's)", value: rt})
	}
	return out, nil
}

// accessToken is the valid access token snowauth wrote to the token
// Secret, if there is one.
func accessToken(s *scope) []heldToken {
	if s.stored == nil || !s.now.Before(s.stored.expiry) {
		return nil
	}
	return []heldToken{{kind: kindAccessToken, where: "Secret " + s.conn.TokenSecretName(), value: s.stored.accessToken}}
}

// revoke revokes one token at instance, the one that issued it, and
// records it in an Event; note adds to the Event. An access token
// other connections hold too (ServiceNow hands the same access token to
// every request of one OAuth client and user) is revoked only when always
// is set (a revoke request: the token leaked): at a deletion, revoking it
// would break them.
func (r *ServiceNowConnectionReconciler) revoke(ctx context.Context, s *scope, instance servicenow.Instance, t heldToken, always bool, note string) error {
	others, err := r.holdersOf(ctx, s.conn, t)
	if err != nil {
		return err
	}
	if len(others) > 0 && !always {
		r.event(s.conn, corev1.EventTypeWarning, "RevocationSkipped", revokeAction(t.kind),
			"did not revoke the %s in %s: connections %s hold the same token (ServiceNow issues one access token per "+
				"OAuth client and user), and revoking it would break them; it expires on its own",
			t.kind, t.where, strings.Join(others, ", "))
		return nil
	}
	if err := r.Tokens.Revoke(ctx, instance, t.value); err != nil {
		return err
	}
	if t.kind == kindAccessToken {
		// ServiceNow's answer does not say whether the token was known (nor
		// whether the instance read it from the form body): ask whether it
		// still takes the token. Only a 401 says it does not: a 403 (a REST
		// API auth scope), a 429 or an outage says nothing about the token.
		_, err := r.Tokens.CurrentUser(ctx, instance, t.value)
		var se *servicenow.Error
		if !errors.As(err, &se) || se.Kind != servicenow.KindAuthenticationFailed || se.StatusCode != http.StatusUnauthorized {
			why := "still accepts the token"
			if err != nil {
				why = "did not say whether it still takes the token (" + err.Error() + ")"
			}
			return &failure{reason: string(servicenow.KindInvalidResponse), retryable: true,
				message: fmt.Sprintf("%s accepted the revocation but %s; see docs/servicenow-setup.md (Revocation)", instance, why)}
		}
	}
	if len(others) > 0 {
		note += fmt.Sprintf("; connections %s held the same token (ServiceNow issues one access token per OAuth client "+
			"and user) and keep it until their next refresh: refresh them now (kubectl servicenow refresh)", strings.Join(others, ", "))
	}
	r.event(s.conn, corev1.EventTypeNormal, "TokenRevoked", revokeAction(t.kind), "revoked the %s in %s at %s%s", t.kind, t.where, instance, note)
	return nil
}

// revokeAction is the Event action of revoking a kind of token, such as
// RevokeAccessToken: Events of one reason and action about one connection
// are merged into a series, which would hide all but the first note.
func revokeAction(kind string) string {
	words := strings.Fields(kind)
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return "Revoke" + strings.Join(words, "")
}

// holdersOf names the other connections whose token Secret holds the
// access token t, from the cache (an index of the tokens' fingerprints).
func (r *ServiceNowConnectionReconciler) holdersOf(ctx context.Context, conn *snowv1.ServiceNowConnection, t heldToken) ([]string, error) {
	if t.kind != kindAccessToken {
		return nil, nil
	}
	var secrets corev1.SecretList
	if err := r.List(ctx, &secrets, client.MatchingFields{tokenFingerprintIndex: fingerprint(t.value)}); err != nil {
		return nil, err
	}
	var others []string
	for _, secret := range secrets.Items {
		ref := metav1.GetControllerOf(&secret)
		if ref == nil || ref.UID == conn.UID {
			continue
		}
		other := &snowv1.ServiceNowConnection{}
		err := r.Get(ctx, types.NamespacedName{Namespace: secret.Namespace, Name: ref.Name}, other)
		if err == nil && other.UID == ref.UID && other.DeletionTimestamp != nil && other.Spec.RevokeOnDelete {
			continue // going too, and revoking what it holds
		}
		others = append(others, secret.Namespace+"/"+ref.Name)
	}
	return others, nil
}

// revokeRequested acts on a revoke request (the revoke-requested-at
// annotation): it revokes the access token in the token Secret and has the
// decision ask for a new one at once (s.revoked). A failed revocation is
// the connection's failure (RevocationFailed), retried with the usual
// backoff; no new token is asked for meanwhile, since ServiceNow would hand
// back the same, leaked, one. With no valid token to revoke (none, or it
// expired meanwhile) the request is handled as it is. done says the
// reconcile ends here.
func (r *ServiceNowConnectionReconciler) revokeRequested(ctx context.Context, s *scope) (done bool, err error) {
	st := &s.conn.Status
	requested := s.conn.Annotations[snowv1.AnnotationRevokeRequestedAt]
	if requested == "" || requested == st.LastHandledRevokeRequest {
		return false, nil
	}
	// A cached connection that has not caught up with the status recording
	// the last request would revoke the new token.
	if err := r.confirmCacheIsCurrent(ctx, s); err != nil {
		return true, err
	}
	for _, t := range accessToken(s) {
		// The instance the token came from, as status recorded it.
		instance, err := r.Tokens.ResolveInstance(st.InstanceURL)
		if err == nil {
			err = r.revoke(ctx, s, instance, t, true, fmt.Sprintf(" (revoke request %s); a new token replaces it", requested))
		}
		if err != nil {
			f := classify(err)
			if f == nil {
				return true, err
			}
			return true, r.fail(ctx, s, &failure{reason: snowv1.ReasonRevocationFailed, retryable: true, retryAfter: f.retryAfter,
				message: fmt.Sprintf("could not revoke the %s in %s for revoke request %s (%s: %s); snowauth retries, and asks "+
					"for no new token until it is revoked (ServiceNow would answer with the same token)", t.kind, t.where, requested, f.reason, f.message)}, true)
		}
		s.stored.expiry, s.revoked = s.now, true // revoked is expired, to ServiceNow
		r.kept.drop(s.conn.UID)
		s.kept = false
	}
	st.LastHandledRevokeRequest = requested
	return false, nil
}

// revokeSuperseded revokes the refresh token a new authorization replaced,
// once: best effort, a failure is a Warning Event and never the
// connection's failure.
func (r *ServiceNowConnectionReconciler) revokeSuperseded(ctx context.Context, s *scope, instance servicenow.Instance, superseded, linkID string) {
	if superseded == "" || s.refresh == nil || string(s.refresh.Data[snowv1.AuthorizationKeyRefreshToken]) == superseded {
		return
	}
	t := heldToken{kind: "superseded " + kindRefreshToken, where: "Secret " + s.conn.RefreshTokenSecretName(), value: superseded}
	if was := s.conn.Status.InstanceURL; was != "" && was != instance.String() {
		// The old token is another instance's: it is never sent elsewhere.
		r.event(s.conn, corev1.EventTypeWarning, snowv1.ReasonRevocationFailed, revokeAction(t.kind),
			"did not revoke the %s: it was issued by %s, and the credentials now name %s; revoke it there (System OAuth > Manage Tokens)",
			t.kind, was, instance)
		return
	}
	if err := r.revoke(ctx, s, instance, t, true, " (replaced by the authorization of link "+linkID+")"); err != nil {
		logf.FromContext(ctx).Info("could not revoke the superseded refresh token", "reason", servicenow.KindOf(err))
		r.event(s.conn, corev1.EventTypeWarning, snowv1.ReasonRevocationFailed, revokeAction(t.kind),
			"could not revoke the %s in %s (%s): it stays valid until it expires (revoke it in System OAuth > Manage Tokens)",
			t.kind, t.where, err)
	}
}
