package controllers

import (
	corev1 "k8s.io/api/core/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// refreshTrigger says why a token request is due now, or "" if none is. It
// is decided from what the caches show, before the credentials are read,
// and once per reconcile.
//
//   - Changes a person makes (spec, credentials, a refresh request) are due
//     at once, even during a backoff, and so is a new token after the stored
//     one was revoked on request (revoke.go).
//   - A token obtained earlier but not stored yet is due once any backoff
//     ends: storing it costs no request.
//   - A failure found before any request was made (a missing Secret or key,
//     a Secret name conflict, no authorization yet) is re-checked: that
//     costs nothing at ServiceNow.
//   - Anything ServiceNow answered waits out its backoff: an empty token
//     Secret is refilled at once only when nothing is being waited out.
//   - A password ServiceNow rejected spec.password.maxRejections times in a
//     row is not sent again until a person changes something.
func refreshTrigger(s *scope) string {
	st := s.conn.Status
	requested := s.conn.Annotations[snowv1.AnnotationRefreshRequestedAt]
	waiting := st.NextRefreshTime != nil && s.now.Before(st.NextRefreshTime.Time)
	backingOff := waiting && s.failure != nil
	switch {
	case s.jwt.pending:
		return "" // until the first signing key is published (jwtbearer.go)
	case s.handover != nil:
		return "a person authorised: the authorization code is to be exchanged"
	case s.revoked:
		return "the access token was revoked on request: a new one replaces it"
	case s.conn.Generation != st.ObservedGeneration:
		return "the spec changed"
	case credentialsVersion(s.creds, s.refresh) != st.CredentialsResourceVersion:
		return "the credentials Secret changed"
	case requested != "" && requested != st.LastHandledRefreshRequest:
		return "a refresh was requested"
	case passwordStopped(s):
		return "" // until a person changes something (above)
	case s.kept && !backingOff:
		return "a token obtained earlier is not stored yet"
	case s.failure != nil && isPrecondition(s.failure.reason):
		return "re-checking " + s.failure.reason
	case s.stored == nil && !backingOff:
		return "the token Secret holds no token"
	case !waiting:
		return "the token is due for refresh"
	}
	return ""
}

// credentialsVersion identifies the inputs a token request is made from:
// the credentials Secret's resourceVersion, and for the AuthorizationCode
// grant the stored refresh token's version (a new authorization is a
// change; a new link in the same Secret is not).
func credentialsVersion(creds, refresh *corev1.Secret) string {
	if creds == nil {
		return ""
	}
	v := creds.ResourceVersion
	if refresh != nil {
		if rv := refreshTokenVersion(refresh); rv != "" {
			v += "/" + rv
		}
	}
	return v
}

// markHandled records the inputs this token request answers, so the same
// spec, credentials and refresh request do not trigger another.
func (r *ServiceNowConnectionReconciler) markHandled(s *scope) {
	st := &s.conn.Status
	v := credentialsVersion(s.creds, s.refresh)
	if st.CredentialsResourceVersion != "" && v != "" && st.CredentialsResourceVersion != v {
		r.event(s.conn, corev1.EventTypeNormal, "CredentialsChanged", "ReadCredentials",
			"credentials of Secret %s changed; requesting a new token", s.creds.Name)
	}
	st.CredentialsResourceVersion = v
	st.LastHandledRefreshRequest = s.conn.Annotations[snowv1.AnnotationRefreshRequestedAt]
}
