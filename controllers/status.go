package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// statusInput is everything the conditions depend on.
type statusInput struct {
	now        time.Time
	generation int64
	suspended  bool
	// secretName is the token Secret's name.
	secretName string
	// expiry is when the token really in the token Secret now expires; nil
	// when the Secret holds no token snowauth wrote.
	expiry *time.Time
	// failure is the latest attempt's failure; nil when it succeeded or no
	// attempt was made yet.
	failure *failure
	// reauthorize, when not empty, says the refresh token of the
	// AuthorizationCode grant expires soon (RefreshTokenExpiring).
	reauthorize string
	// expiring and its reason, when not empty, say a credential's horizon
	// is near (CredentialExpiring).
	expiring, expiringReason string
	// probePaths are spec.probe's paths and probe what the latest probe
	// found (Authorized, probe.go).
	probePaths []string
	probe      *snowv1.ProbeStatus
}

// conditions computes the connection's conditions: Ready always,
// RefreshFailed, Stalled, Reconciling, RefreshTokenExpiring and
// CredentialExpiring only while they are true, and Authorized while
// spec.probe is set. Messages hold
// absolute times, never "in 5m", so an unchanged state writes nothing.
func conditions(in statusInput) []metav1.Condition {
	cond := func(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: bound(printable(msg), maxConditionMessage),
			ObservedGeneration: in.generation, LastTransitionTime: metav1.NewTime(in.now),
		}
	}
	valid := in.expiry != nil && in.now.Before(*in.expiry)
	f := in.failure

	var ready metav1.Condition
	switch {
	case in.suspended:
		ready = cond(snowv1.ConditionReady, metav1.ConditionFalse, snowv1.ReasonSuspended,
			"refreshing is suspended (spec.suspend is true); the token Secret is left as it is")
	case valid:
		ready = cond(snowv1.ConditionReady, metav1.ConditionTrue, snowv1.ReasonTokenValid,
			fmt.Sprintf("Secret %s holds a token valid until %s", in.secretName, in.expiry.UTC().Format(time.RFC3339)))
	case in.expiry != nil:
		msg := fmt.Sprintf("the token in Secret %s expired at %s", in.secretName, in.expiry.UTC().Format(time.RFC3339))
		if f != nil {
			msg += "; the last refresh failed: " + f.message
		}
		ready = cond(snowv1.ConditionReady, metav1.ConditionFalse, snowv1.ReasonTokenExpired, msg)
	case f != nil:
		ready = cond(snowv1.ConditionReady, metav1.ConditionFalse, f.reason, f.message)
	default:
		ready = cond(snowv1.ConditionReady, metav1.ConditionFalse, snowv1.ReasonProgressing, "requesting a first token")
	}
	out := []metav1.Condition{ready}
	if in.suspended {
		return out
	}

	if f != nil {
		out = append(out, cond(snowv1.ConditionRefreshFailed, metav1.ConditionTrue, f.reason, f.message))
		if f.retryable {
			out = append(out, cond(snowv1.ConditionReconciling, metav1.ConditionTrue, f.reason, "retrying: "+f.message))
		} else {
			out = append(out, cond(snowv1.ConditionStalled, metav1.ConditionTrue, f.reason, f.message))
		}
	} else if in.expiry == nil {
		out = append(out, cond(snowv1.ConditionReconciling, metav1.ConditionTrue, snowv1.ReasonProgressing, "requesting a first token"))
	}
	if in.reauthorize != "" {
		out = append(out, cond(snowv1.ConditionRefreshTokenExpiring, metav1.ConditionTrue, snowv1.ReasonRefreshTokenExpiresSoon, in.reauthorize))
	}
	if in.expiring != "" {
		out = append(out, cond(snowv1.ConditionCredentialExpiring, metav1.ConditionTrue, in.expiringReason, in.expiring))
	}
	if status, reason, msg := probeOutcome(in.probePaths, in.probe); status != "" {
		out = append(out, cond(snowv1.ConditionAuthorized, status, reason, msg))
	}
	return out
}

// summary is the reason a person acts on, and its message: RefreshFailed's
// while a refresh is failing (the old token may still work, and Ready alone
// would hide that), else Ready's.
func summary(conds []metav1.Condition) (reason, message string) {
	for _, t := range []string{snowv1.ConditionRefreshFailed, snowv1.ConditionReady} {
		if c := meta.FindStatusCondition(conds, t); c != nil && (t == snowv1.ConditionReady || c.Status == metav1.ConditionTrue) {
			return c.Reason, c.Message
		}
	}
	return "", ""
}

// setConditions makes conn's conditions the desired ones: it adds or updates
// each (keeping LastTransitionTime when the status did not change) and
// removes the types present only at times (all but Ready) that are not
// desired.
func setConditions(conds *[]metav1.Condition, desired []metav1.Condition) {
	for _, t := range []string{snowv1.ConditionRefreshFailed, snowv1.ConditionStalled, snowv1.ConditionReconciling,
		snowv1.ConditionRefreshTokenExpiring, snowv1.ConditionCredentialExpiring, snowv1.ConditionAuthorized} {
		if meta.FindStatusCondition(desired, t) == nil {
			meta.RemoveStatusCondition(conds, t)
		}
	}
	for _, c := range desired {
		meta.SetStatusCondition(conds, c)
	}
}

// writeStatus computes the conditions from what the token Secret really
// holds now and writes status once, and only if something changed: an idle
// reconcile makes no API write. It runs whatever failed before it.
func (r *ServiceNowConnectionReconciler) writeStatus(ctx context.Context, base *snowv1.ServiceNowConnection, s *scope) error {
	conn := s.conn
	var expiry *time.Time
	conn.Status.ExpiresAt = nil
	if s.stored != nil {
		expiry = &s.stored.expiry
		conn.Status.ExpiresAt = &metav1.Time{Time: s.stored.expiry}
		conn.Status.InstanceURL = s.stored.instanceURL
	}
	if s.secret != nil {
		conn.Status.TokenSecretName = s.secret.Name
	}
	reauthorize := r.authorizationStatus(s)
	expiringReason, expiring := r.horizonStatus(s)
	var probePaths []string
	if p := conn.Spec.Probe; p != nil {
		probePaths = p.Paths
	} else {
		conn.Status.Probe = nil
	}
	setConditions(&conn.Status.Conditions, conditions(statusInput{
		now:         s.now,
		generation:  conn.Generation,
		suspended:   conn.Spec.Suspend,
		secretName:  conn.TokenSecretName(),
		expiry:      expiry,
		failure:     s.failure,
		reauthorize: reauthorize, expiring: expiring, expiringReason: expiringReason,
		probePaths: probePaths,
		probe:      conn.Status.Probe,
	}))
	conn.Status.Reason, conn.Status.Message = summary(conn.Status.Conditions)
	conn.Status.ObservedGeneration = conn.Generation
	if equality.Semantic.DeepEqual(base.Status, conn.Status) {
		return nil
	}
	err := r.Status().Patch(ctx, conn, client.MergeFrom(base))
	if apierrors.IsInvalid(err) || apierrors.IsRequestEntityTooLargeError(err) || apierrors.IsBadRequest(err) {
		// Something in status was refused (a policy, a size limit). Write
		// what tells the truth and what keeps the schedule (without it,
		// every reconcile would ask ServiceNow again); leave out the links
		// and names.
		logf.FromContext(ctx).Info("status was refused; writing the conditions and the schedule alone", "reason", apierrors.ReasonForError(err))
		minimal := base.DeepCopy()
		in, out := &conn.Status, &minimal.Status
		out.Conditions, out.ObservedGeneration, out.ExpiresAt, out.InstanceURL = in.Conditions, in.ObservedGeneration, in.ExpiresAt, in.InstanceURL
		out.Reason, out.Message = in.Reason, in.Message
		out.NextRefreshTime, out.ConsecutiveFailures, out.LastFailureTime = in.NextRefreshTime, in.ConsecutiveFailures, in.LastFailureTime
		out.CredentialsResourceVersion, out.LastHandledRefreshRequest = in.CredentialsResourceVersion, in.LastHandledRefreshRequest
		out.LastHandledRevokeRequest = in.LastHandledRevokeRequest // else a handled revoke request would revoke each new token
		if err = r.Status().Patch(ctx, minimal, client.MergeFrom(base)); err == nil {
			conn.ResourceVersion = minimal.ResourceVersion
		}
	}
	if err != nil {
		return err
	}
	r.written.Store(client.ObjectKeyFromObject(conn), conn.ResourceVersion)
	return nil
}

// event records an Event about conn, its note bounded to what the Events
// API keeps.
func (r *ServiceNowConnectionReconciler) event(conn *snowv1.ServiceNowConnection, typ, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(conn, nil, typ, reason, action, "%s", bound(printable(fmt.Sprintf(note, args...)), maxEventNote))
	}
}
