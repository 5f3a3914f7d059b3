package controllers

import (
	"errors"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

func int32Ptr(n int32) *int32 { return &n }

func TestProbeOutcome(t *testing.T) {
	const (
		incident = "/api/now/table/incident?sysparm_limit=1"
		change   = "/api/now/table/change_request?sysparm_limit=1"
		health   = "/api/x_acme_orders/v1/health"
	)
	at := metav1.NewTime(t0)
	ok := func(path string) snowv1.ProbePathStatus {
		return snowv1.ProbePathStatus{Path: path, Result: snowv1.ProbeAuthorized, StatusCode: 200}
	}
	rows := func(path string, n int32) snowv1.ProbePathStatus {
		p := ok(path)
		p.Rows = int32Ptr(n)
		return p
	}
	scope := snowv1.ProbePathStatus{Path: change, Result: snowv1.ProbeForbidden, StatusCode: 403,
		Message: `the instance refused the request (HTTP 403, error "Missing required api access scope")`}
	unauthenticated := snowv1.ProbePathStatus{Path: health, Result: snowv1.ProbeUnauthorized, StatusCode: 401,
		Message: `the instance did not accept the token (HTTP 401, error "User Not Authenticated")`}
	notFound := snowv1.ProbePathStatus{Path: health, Result: snowv1.ProbeFailed, StatusCode: 400,
		Message: `unexpected answer from the instance (HTTP 400, error "Requested URI does not represent any resource")`}

	for _, tc := range []struct {
		name        string
		paths       []string
		probe       *snowv1.ProbeStatus
		status      metav1.ConditionStatus
		reason      string
		msgContains []string
		msgLacks    []string
	}{
		{
			name:  "has no condition without spec.probe",
			probe: &snowv1.ProbeStatus{Time: at, Paths: []snowv1.ProbePathStatus{ok(incident)}},
		},
		{
			name:   "is Unknown until a token was probed",
			paths:  []string{incident},
			status: metav1.ConditionUnknown, reason: snowv1.ReasonProbePending,
			msgContains: []string{"after the next token"},
		},
		{
			name:   "is Unknown when spec.probe changed since the latest probe",
			paths:  []string{incident, change},
			probe:  &snowv1.ProbeStatus{Time: at, Paths: []snowv1.ProbePathStatus{ok(incident)}},
			status: metav1.ConditionUnknown, reason: snowv1.ReasonProbePending,
		},
		{
			name:   "is True when every path answered 2xx",
			paths:  []string{incident, health},
			probe:  &snowv1.ProbeStatus{Time: at, Paths: []snowv1.ProbePathStatus{rows(incident, 1), ok(health)}},
			status: metav1.ConditionTrue, reason: snowv1.ReasonProbeSucceeded,
			msgContains: []string{"every probe path answered the token with 2xx at 2030-01-01T12:00:00Z"},
			msgLacks:    []string{"ACLs"},
		},
		{
			name:   "notes a table query that returned no rows while staying True",
			paths:  []string{incident},
			probe:  &snowv1.ProbeStatus{Time: at, Paths: []snowv1.ProbePathStatus{rows(incident, 0)}},
			status: metav1.ConditionTrue, reason: snowv1.ReasonProbeSucceeded,
			msgContains: []string{"GET " + incident + " returned no rows: ACLs may hide records from this user"},
		},
		{
			name:   "is False with the path, ServiceNow's message and what to do on a missing scope",
			paths:  []string{incident, change},
			probe:  &snowv1.ProbeStatus{Time: at, Paths: []snowv1.ProbePathStatus{rows(incident, 1), scope}},
			status: metav1.ConditionFalse, reason: snowv1.ReasonProbeForbidden,
			msgContains: []string{"1 of 2 probe paths", "the token is valid and stored", "GET " + change + ": ",
				`"Missing required api access scope"`, "REST API auth scopes", "tokens already issued"},
			msgLacks: []string{incident},
		},
		{
			name:   "says ProbeUnauthorized when a path answered 401, whatever else failed",
			paths:  []string{change, health},
			probe:  &snowv1.ProbeStatus{Time: at, Paths: []snowv1.ProbePathStatus{scope, unauthenticated}},
			status: metav1.ConditionFalse, reason: snowv1.ReasonProbeUnauthorized,
			msgContains: []string{"2 of 2", "GET " + change, "GET " + health, "User Not Authenticated"},
		},
		{
			name:   "says ProbeFailed for any other answer",
			paths:  []string{health},
			probe:  &snowv1.ProbeStatus{Time: at, Paths: []snowv1.ProbePathStatus{notFound}},
			status: metav1.ConditionFalse, reason: snowv1.ReasonProbeFailed,
			msgContains: []string{"GET " + health + ": unexpected answer from the instance (HTTP 400"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			status, reason, message := probeOutcome(tc.paths, tc.probe)
			g.Expect(status).To(Equal(tc.status))
			g.Expect(reason).To(Equal(tc.reason))
			for _, s := range tc.msgContains {
				g.Expect(message).To(ContainSubstring(s))
			}
			for _, s := range tc.msgLacks {
				g.Expect(message).NotTo(ContainSubstring(s))
			}
			g.Expect(message).NotTo(MatchRegexp(relativeDuration.String()), "messages hold absolute times only")
		})
	}
}

func TestConditionsCarryAuthorizedBesideATrueReady(t *testing.T) {
	g := NewWithT(t)
	validUntil := t0.Add(20 * time.Minute)
	paths := []string{"/api/now/table/incident?sysparm_limit=1"}
	forbidden := &snowv1.ProbeStatus{Time: metav1.NewTime(t0), Paths: []snowv1.ProbePathStatus{{
		Path: paths[0], Result: snowv1.ProbeForbidden, StatusCode: 403, Message: "HTTP 403"}}}

	got := conditions(statusInput{now: t0, generation: 1, secretName: "s", expiry: &validUntil, probePaths: paths, probe: forbidden})

	g.Expect(meta.FindStatusCondition(got, snowv1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), "a refused probe is no token failure")
	g.Expect(meta.FindStatusCondition(got, snowv1.ConditionRefreshFailed)).To(BeNil())
	g.Expect(meta.FindStatusCondition(got, snowv1.ConditionAuthorized).Reason).To(Equal(snowv1.ReasonProbeForbidden))

	suspended := conditions(statusInput{now: t0, generation: 1, secretName: "s", expiry: &validUntil, suspended: true, probePaths: paths, probe: forbidden})
	g.Expect(meta.FindStatusCondition(suspended, snowv1.ConditionAuthorized)).To(BeNil(), "a suspended connection reports Suspended and nothing else")

	conds := got
	setConditions(&conds, conditions(statusInput{now: t0, generation: 1, secretName: "s", expiry: &validUntil}))
	g.Expect(meta.FindStatusCondition(conds, snowv1.ConditionAuthorized)).To(BeNil(), "Authorized goes with spec.probe")
}

func TestProbeResult(t *testing.T) {
	g := NewWithT(t)
	reset := t0.Add(30 * time.Minute)

	ok := probeResult("/api/now/table/incident?sysparm_limit=1", servicenow.ProbeResult{StatusCode: 200, TableRows: true, Rows: 0,
		RateLimit: servicenow.RateLimit{Limit: 100, Reset: reset, Rule: "5f2e4a1bdb3313003a7a52e5ae9619c4"}}, nil)
	g.Expect(ok.Result).To(Equal(snowv1.ProbeAuthorized))
	g.Expect(ok.Rows).To(Equal(int32Ptr(0)))
	g.Expect(ok.RateLimit).To(Equal(&snowv1.RateLimitStatus{Limit: 100, ResetAt: &metav1.Time{Time: reset}, Rule: "5f2e4a1bdb3313003a7a52e5ae9619c4"}))

	notTable := probeResult("/api/x/v1/health", servicenow.ProbeResult{StatusCode: 204}, nil)
	g.Expect(notTable.Rows).To(BeNil())
	g.Expect(notTable.RateLimit).To(BeNil(), "no rule matched, no rate limit")

	for _, tc := range []struct {
		status int
		kind   servicenow.Kind
		want   snowv1.ProbeResult
	}{
		{http.StatusUnauthorized, servicenow.KindAuthenticationFailed, snowv1.ProbeUnauthorized},
		{http.StatusForbidden, servicenow.KindAuthenticationFailed, snowv1.ProbeForbidden},
		{http.StatusTooManyRequests, servicenow.KindRateLimited, snowv1.ProbeFailed},
		{0, servicenow.KindTimeout, snowv1.ProbeFailed},
	} {
		err := &servicenow.Error{Kind: tc.kind, StatusCode: tc.status}
		g.Expect(probeResult("/api/x", servicenow.ProbeResult{StatusCode: tc.status}, err).Result).To(Equal(tc.want), "HTTP %d", tc.status)
	}
	g.Expect(probeResult("/api/x", servicenow.ProbeResult{}, errors.New("no instance")).Result).To(Equal(snowv1.ProbeFailed))
}
