package controllers

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

func TestRefreshTrigger(t *testing.T) {
	const (
		credsVersion   = "4711"
		handledRequest = "2030-01-01T10:00:00Z"
	)
	plannedRefresh := t0.Add(10 * time.Minute)

	// freshScope is a connection whose token is fresh and whose spec,
	// credentials Secret and refresh request snowauth has all handled.
	freshScope := func() *scope {
		return &scope{
			now: t0,
			conn: &snowv1.ServiceNowConnection{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: "team-a", Name: "snow", Generation: 2,
					Annotations: map[string]string{snowv1.AnnotationRefreshRequestedAt: handledRequest},
				},
				Spec: snowv1.ServiceNowConnectionSpec{CredentialsSecretRef: snowv1.SecretReference{Name: "snow-creds"}},
				Status: snowv1.ServiceNowConnectionStatus{
					ObservedGeneration:         2,
					CredentialsResourceVersion: credsVersion,
					LastHandledRefreshRequest:  handledRequest,
					ExpiresAt:                  &metav1.Time{Time: t0.Add(20 * time.Minute)},
					LastRefreshTime:            &metav1.Time{Time: t0.Add(-10 * time.Minute)},
					NextRefreshTime:            &metav1.Time{Time: plannedRefresh},
				},
			},
			creds: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
				Namespace: "team-a", Name: "snow-creds", ResourceVersion: credsVersion,
			}},
			stored: &storedToken{accessToken: "the-token-snowauth-wrote", expiry: t0.Add(20 * time.Minute)},
		}
	}
	// failed records in status, as Reconcile would have, that the latest
	// attempt failed for reason after failures attempts, with the next
	// attempt planned retryIn from now; the scope carries the failure
	// recovered from status, as Reconcile does.
	failed := func(s *scope, reason string, failures int32, retryIn time.Duration) {
		st := &s.conn.Status
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: snowv1.ConditionRefreshFailed, Status: metav1.ConditionTrue, Reason: reason, Message: "it failed",
		})
		st.ConsecutiveFailures = failures
		if failures > 0 {
			st.LastFailureTime = &metav1.Time{Time: s.now.Add(-time.Second)}
		}
		st.NextRefreshTime = &metav1.Time{Time: s.now.Add(retryIn)}
		s.failure = failureFromStatus(st.Conditions)
	}
	const (
		unavailable = string(servicenow.KindInstanceUnavailable)
		rateLimited = string(servicenow.KindRateLimited)
		rejected    = string(servicenow.KindAuthenticationFailed)
		notAllowed  = string(servicenow.KindInvalidInstance)
	)

	for _, tc := range []struct {
		name   string
		mutate func(s *scope)
		want   string
	}{
		{
			name: "requests nothing while the token is fresh and nothing changed",
			want: "",
		},
		{
			name:   "requests nothing a second before the planned refresh",
			mutate: func(s *scope) { s.now = plannedRefresh.Add(-time.Second) },
			want:   "",
		},
		{
			name:   "refreshes when the planned refresh time is reached",
			mutate: func(s *scope) { s.now = plannedRefresh },
			want:   "the token is due for refresh",
		},
		{
			name:   "refreshes when the planned refresh time has passed",
			mutate: func(s *scope) { s.now = plannedRefresh.Add(time.Hour) },
			want:   "the token is due for refresh",
		},
		{
			name: "requests a first token for a new connection",
			mutate: func(s *scope) {
				s.conn.Generation = 1
				s.conn.Annotations = nil
				s.conn.Status = snowv1.ServiceNowConnectionStatus{}
				s.stored = nil
			},
			want: "the spec changed",
		},
		{
			name:   "requests a token when the spec changed",
			mutate: func(s *scope) { s.conn.Generation = 3 },
			want:   "the spec changed",
		},
		{
			name: "requests a token when the spec changed, even while backing off",
			mutate: func(s *scope) {
				failed(s, unavailable, 4, time.Minute)
				s.conn.Generation = 3
			},
			want: "the spec changed",
		},
		{
			name:   "requests a token when the credentials Secret changed",
			mutate: func(s *scope) { s.creds.ResourceVersion = "4712" },
			want:   "the credentials Secret changed",
		},
		{
			name: "requests a token when the credentials Secret changed, even while backing off after an outage",
			mutate: func(s *scope) {
				failed(s, unavailable, 6, 5*time.Minute)
				s.creds.ResourceVersion = "4712"
			},
			want: "the credentials Secret changed",
		},
		{
			name: "requests a token when rejected credentials are rotated, without waiting for the slow retry",
			mutate: func(s *scope) {
				failed(s, rejected, 1, 15*time.Minute)
				s.creds.ResourceVersion = "4712"
			},
			want: "the credentials Secret changed",
		},
		{
			name:   "notices at once that the credentials Secret was deleted",
			mutate: func(s *scope) { s.creds = nil },
			want:   "the credentials Secret changed",
		},
		{
			name: "requests a token when a created credentials Secret replaces a missing one",
			mutate: func(s *scope) {
				failed(s, snowv1.ReasonCredentialsNotFound, 1, 15*time.Minute)
				s.conn.Status.CredentialsResourceVersion = ""
			},
			want: "the credentials Secret changed",
		},
		{
			name:   "refreshes when a refresh is requested with the annotation",
			mutate: func(s *scope) { s.conn.Annotations[snowv1.AnnotationRefreshRequestedAt] = "2030-01-01T11:59:00Z" },
			want:   "a refresh was requested",
		},
		{
			name: "refreshes when a refresh is requested with the annotation, even while backing off",
			mutate: func(s *scope) {
				failed(s, rateLimited, 2, 30*time.Minute)
				s.conn.Annotations[snowv1.AnnotationRefreshRequestedAt] = "2030-01-01T11:59:00Z"
			},
			want: "a refresh was requested",
		},
		{
			// NOTE (reported): any change of the annotation counts, so
			// removing it after a refresh asks for one more token.
			name:   "does not treat removing the refresh annotation as a refresh request",
			mutate: func(s *scope) { s.conn.Annotations = nil },
			want:   "",
		},
		{
			name:   "requests a token at once when the token Secret holds no token (deleted or edited)",
			mutate: func(s *scope) { s.stored = nil },
			want:   "the token Secret holds no token",
		},
		{
			name:   "keeps waiting out a transient failure while the token is still valid",
			mutate: func(s *scope) { failed(s, unavailable, 1, 5*time.Second) },
			want:   "",
		},
		{
			name: "retries when the backoff after a transient failure ends",
			mutate: func(s *scope) {
				failed(s, unavailable, 3, 20*time.Second)
				s.now = s.now.Add(20 * time.Second)
			},
			want: "the token is due for refresh",
		},
		{
			name: "waits out an outage's backoff even when the token Secret is missing",
			mutate: func(s *scope) {
				failed(s, unavailable, 2, 10*time.Second)
				s.stored = nil
			},
			want: "",
		},
		{
			name: "waits out a rate limit's Retry-After even when the token Secret is missing",
			mutate: func(s *scope) {
				failed(s, rateLimited, 1, time.Hour)
				s.stored = nil
			},
			want: "",
		},
		{
			name: "waits for the slow retry after rejected credentials even when the token Secret is missing",
			mutate: func(s *scope) {
				failed(s, rejected, 1, 15*time.Minute)
				s.stored = nil
			},
			want: "",
		},
		{
			name: "requests a token once the backoff ends when the token Secret is missing",
			mutate: func(s *scope) {
				failed(s, unavailable, 2, 10*time.Second)
				s.stored = nil
				s.now = s.now.Add(10 * time.Second)
			},
			want: "the token Secret holds no token",
		},
		{
			name: "re-checks a missing credentials Secret on every reconcile: that sends nothing to ServiceNow",
			mutate: func(s *scope) {
				s.creds = nil
				s.conn.Status.CredentialsResourceVersion = ""
				failed(s, snowv1.ReasonCredentialsNotFound, 1, 15*time.Minute)
			},
			want: "re-checking CredentialsNotFound",
		},
		{
			name: "re-checks invalid credentials instead of backing off, even when the token Secret is missing",
			mutate: func(s *scope) {
				failed(s, snowv1.ReasonCredentialsInvalid, 0, 10*time.Minute)
				s.stored = nil
			},
			want: "re-checking CredentialsInvalid",
		},
		{
			// ServiceNow answers a redirect or a 404 with InvalidInstance.
			name:   "does not send again to an instance that redirected, on an unrelated event",
			mutate: func(s *scope) { failed(s, notAllowed, 1, 15*time.Minute) },
			want:   "",
		},
		{
			name: "re-checks a conflicting Secret",
			mutate: func(s *scope) {
				failed(s, snowv1.ReasonSecretConflict, 0, 10*time.Minute)
				s.stored = nil
			},
			want: "re-checking SecretConflict",
		},
		{
			name: "does not send a refresh token ServiceNow rejected again on an unrelated event",
			mutate: func(s *scope) {
				failed(s, snowv1.ReasonRefreshTokenRejected, 1, 15*time.Minute)
				s.stored = nil
			},
			want: "",
		},
		{
			name: "does not send rejected credentials again on an unrelated event",
			mutate: func(s *scope) {
				failed(s, rejected, 1, 15*time.Minute)
			},
			want: "",
		},
		{
			name:   "stores a token obtained earlier without waiting for the planned refresh",
			mutate: func(s *scope) { s.kept = true },
			want:   "a token obtained earlier is not stored yet",
		},
		{
			name: "waits out the backoff after a refused token Secret write, with the token kept",
			mutate: func(s *scope) {
				failed(s, snowv1.ReasonTokenSecretWriteFailed, 2, 10*time.Second)
				s.kept = true
			},
			want: "",
		},
		{
			name: "stores the kept token when the backoff after a refused write ends",
			mutate: func(s *scope) {
				failed(s, snowv1.ReasonTokenSecretWriteFailed, 2, 10*time.Second)
				s.kept = true
				s.now = s.now.Add(10 * time.Second)
			},
			want: "a token obtained earlier is not stored yet",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := freshScope()
			if tc.mutate != nil {
				tc.mutate(s)
			}
			NewWithT(t).Expect(refreshTrigger(s)).To(Equal(tc.want))
		})
	}
}
