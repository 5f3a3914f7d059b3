package controllers

import (
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// relativeDuration matches what a Go duration or an "in 5m" phrase looks
// like; condition messages must hold absolute times only.
var relativeDuration = regexp.MustCompile(`\b\d+(\.\d+)?(ns|us|µs|ms|s|m|h)\b|\bin \d|\bago\b`)

// wantCond is what one condition must say; an empty field is not checked.
type wantCond struct {
	status      metav1.ConditionStatus
	reason      string
	message     string   // exact message
	msgContains []string // substrings of the message
}

func TestConditions(t *testing.T) {
	const (
		generation = int64(7)
		secretName = "snow-token"
	)
	validUntil := t0.Add(20 * time.Minute) // 2030-01-01T12:20:00Z
	expiredAt := t0.Add(-5 * time.Minute)  // 2030-01-01T11:55:00Z
	unavailable := &failure{reason: string(servicenow.KindInstanceUnavailable), message: "the instance is unavailable (HTTP 503 Service Unavailable)", retryable: true}
	hibernating := &failure{reason: string(servicenow.KindInstanceHibernating), message: "the developer instance is hibernating; wake it at developer.servicenow.com", retryable: true}
	rejected := &failure{reason: string(servicenow.KindAuthenticationFailed), message: "ServiceNow rejected the credentials (HTTP 401, access_denied)"}
	noCreds := needsPerson(snowv1.ReasonCredentialsNotFound, "credentials Secret %s not found in namespace %s", "snow-creds", "team-a")

	for _, tc := range []struct {
		name   string
		in     statusInput
		want   map[string]wantCond
		absent []string
	}{
		{
			name: "reports Ready True with the expiry while the token is valid",
			in:   statusInput{expiry: &validUntil},
			want: map[string]wantCond{
				snowv1.ConditionReady: {status: metav1.ConditionTrue, reason: snowv1.ReasonTokenValid,
					message: "Secret snow-token holds a token valid until 2030-01-01T12:20:00Z"},
			},
			absent: []string{snowv1.ConditionRefreshFailed, snowv1.ConditionStalled, snowv1.ConditionReconciling},
		},
		{
			name: "writes the expiry in UTC whatever the clock's time zone",
			in:   statusInput{expiry: timePtr(validUntil.In(time.FixedZone("CET", 3600)))},
			want: map[string]wantCond{
				snowv1.ConditionReady: {status: metav1.ConditionTrue, reason: snowv1.ReasonTokenValid,
					msgContains: []string{"2030-01-01T12:20:00Z"}},
			},
		},
		{
			name: "keeps Ready True but adds RefreshFailed and Reconciling when a transient refresh fails while the token is still valid",
			in:   statusInput{expiry: &validUntil, failure: unavailable},
			want: map[string]wantCond{
				snowv1.ConditionReady: {status: metav1.ConditionTrue, reason: snowv1.ReasonTokenValid,
					msgContains: []string{"2030-01-01T12:20:00Z"}},
				snowv1.ConditionRefreshFailed: {status: metav1.ConditionTrue, reason: "InstanceUnavailable", message: unavailable.message},
				snowv1.ConditionReconciling:   {status: metav1.ConditionTrue, reason: "InstanceUnavailable", message: "retrying: " + unavailable.message},
			},
			absent: []string{snowv1.ConditionStalled},
		},
		{
			name: "keeps Ready True but reports Stalled when credentials are rejected while the token is still valid",
			in:   statusInput{expiry: &validUntil, failure: rejected},
			want: map[string]wantCond{
				snowv1.ConditionReady:         {status: metav1.ConditionTrue, reason: snowv1.ReasonTokenValid},
				snowv1.ConditionRefreshFailed: {status: metav1.ConditionTrue, reason: "AuthenticationFailed", message: rejected.message},
				snowv1.ConditionStalled:       {status: metav1.ConditionTrue, reason: "AuthenticationFailed", message: rejected.message},
			},
			absent: []string{snowv1.ConditionReconciling},
		},
		{
			name: "reports Stalled, not Reconciling, when credentials are rejected",
			in:   statusInput{failure: rejected},
			want: map[string]wantCond{
				snowv1.ConditionReady:         {status: metav1.ConditionFalse, reason: "AuthenticationFailed", message: rejected.message},
				snowv1.ConditionRefreshFailed: {status: metav1.ConditionTrue, reason: "AuthenticationFailed", message: rejected.message},
				snowv1.ConditionStalled:       {status: metav1.ConditionTrue, reason: "AuthenticationFailed", message: rejected.message},
			},
			absent: []string{snowv1.ConditionReconciling},
		},
		{
			name: "reports the failure reason as Ready's reason when no token was ever obtained",
			in:   statusInput{failure: noCreds},
			want: map[string]wantCond{
				snowv1.ConditionReady: {status: metav1.ConditionFalse, reason: snowv1.ReasonCredentialsNotFound,
					message: "credentials Secret snow-creds not found in namespace team-a"},
				snowv1.ConditionRefreshFailed: {status: metav1.ConditionTrue, reason: snowv1.ReasonCredentialsNotFound},
				snowv1.ConditionStalled:       {status: metav1.ConditionTrue, reason: snowv1.ReasonCredentialsNotFound},
			},
			absent: []string{snowv1.ConditionReconciling},
		},
		{
			name: "reports a transient failure of the first request as Ready's reason and keeps Reconciling",
			in:   statusInput{failure: hibernating},
			want: map[string]wantCond{
				snowv1.ConditionReady:         {status: metav1.ConditionFalse, reason: "InstanceHibernating", message: hibernating.message},
				snowv1.ConditionRefreshFailed: {status: metav1.ConditionTrue, reason: "InstanceHibernating"},
				snowv1.ConditionReconciling:   {status: metav1.ConditionTrue, reason: "InstanceHibernating", message: "retrying: " + hibernating.message},
			},
			absent: []string{snowv1.ConditionStalled},
		},
		{
			name: "reports TokenExpired with the last failure once the token expires",
			in:   statusInput{expiry: &expiredAt, failure: unavailable},
			want: map[string]wantCond{
				snowv1.ConditionReady: {status: metav1.ConditionFalse, reason: snowv1.ReasonTokenExpired,
					message: "the token in Secret snow-token expired at 2030-01-01T11:55:00Z; the last refresh failed: " + unavailable.message},
				snowv1.ConditionRefreshFailed: {status: metav1.ConditionTrue, reason: "InstanceUnavailable"},
				snowv1.ConditionReconciling:   {status: metav1.ConditionTrue, reason: "InstanceUnavailable"},
			},
			absent: []string{snowv1.ConditionStalled},
		},
		{
			name: "reports TokenExpired and Stalled once the token expires after credentials were rejected",
			in:   statusInput{expiry: &expiredAt, failure: rejected},
			want: map[string]wantCond{
				snowv1.ConditionReady: {status: metav1.ConditionFalse, reason: snowv1.ReasonTokenExpired,
					msgContains: []string{"2030-01-01T11:55:00Z", rejected.message}},
				snowv1.ConditionStalled: {status: metav1.ConditionTrue, reason: "AuthenticationFailed"},
			},
			absent: []string{snowv1.ConditionReconciling},
		},
		{
			name: "reports the token expired at the very second it expires",
			in:   statusInput{expiry: timePtr(t0)},
			want: map[string]wantCond{
				snowv1.ConditionReady: {status: metav1.ConditionFalse, reason: snowv1.ReasonTokenExpired,
					message: "the token in Secret snow-token expired at 2030-01-01T12:00:00Z"},
			},
			absent: []string{snowv1.ConditionRefreshFailed, snowv1.ConditionStalled},
		},
		{
			name: "reports Progressing and Reconciling while the first token is requested",
			in:   statusInput{},
			want: map[string]wantCond{
				snowv1.ConditionReady:       {status: metav1.ConditionFalse, reason: snowv1.ReasonProgressing, message: "requesting a first token"},
				snowv1.ConditionReconciling: {status: metav1.ConditionTrue, reason: snowv1.ReasonProgressing, message: "requesting a first token"},
			},
			absent: []string{snowv1.ConditionRefreshFailed, snowv1.ConditionStalled},
		},
		{
			name: "reports Suspended and nothing else when suspended",
			in:   statusInput{suspended: true, expiry: &validUntil, failure: rejected},
			want: map[string]wantCond{
				snowv1.ConditionReady: {status: metav1.ConditionFalse, reason: snowv1.ReasonSuspended,
					msgContains: []string{"spec.suspend"}},
			},
			absent: []string{snowv1.ConditionRefreshFailed, snowv1.ConditionStalled, snowv1.ConditionReconciling},
		},
		{
			name: "reports Suspended and nothing else when suspended before any token was obtained",
			in:   statusInput{suspended: true},
			want: map[string]wantCond{
				snowv1.ConditionReady: {status: metav1.ConditionFalse, reason: snowv1.ReasonSuspended},
			},
			absent: []string{snowv1.ConditionRefreshFailed, snowv1.ConditionStalled, snowv1.ConditionReconciling},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := tc.in
			in.now, in.generation, in.secretName = t0, generation, secretName

			got := conditions(in)

			g.Expect(meta.FindStatusCondition(got, snowv1.ConditionReady)).NotTo(BeNil(), "Ready is always present")
			for typ, w := range tc.want {
				c := meta.FindStatusCondition(got, typ)
				g.Expect(c).NotTo(BeNil(), "condition %s", typ)
				if w.status != "" {
					g.Expect(c.Status).To(Equal(w.status), "status of %s", typ)
				}
				if w.reason != "" {
					g.Expect(c.Reason).To(Equal(w.reason), "reason of %s", typ)
				}
				if w.message != "" {
					g.Expect(c.Message).To(Equal(w.message), "message of %s", typ)
				}
				for _, s := range w.msgContains {
					g.Expect(c.Message).To(ContainSubstring(s), "message of %s", typ)
				}
			}
			for _, typ := range tc.absent {
				g.Expect(meta.FindStatusCondition(got, typ)).To(BeNil(), "condition %s must be absent", typ)
			}
			seen := map[string]bool{}
			for _, c := range got {
				g.Expect(seen[c.Type]).To(BeFalse(), "condition %s appears twice", c.Type)
				seen[c.Type] = true
				g.Expect(c.ObservedGeneration).To(Equal(generation), "observedGeneration of %s", c.Type)
				g.Expect(c.LastTransitionTime.Time).To(Equal(t0), "lastTransitionTime of %s", c.Type)
				g.Expect(c.Message).NotTo(MatchRegexp(relativeDuration.String()), "message of %s holds a relative time", c.Type)
				if c.Status == metav1.ConditionTrue && c.Type != snowv1.ConditionReady && c.Type != snowv1.ConditionAuthorized {
					g.Expect(c.Type).To(BeElementOf(snowv1.ConditionRefreshFailed, snowv1.ConditionStalled, snowv1.ConditionReconciling))
				}
			}
			g.Expect(seen[snowv1.ConditionStalled] && seen[snowv1.ConditionReconciling]).To(BeFalse(),
				"a connection is never both Stalled and Reconciling")
		})
	}
}

func TestSetConditions(t *testing.T) {
	earlier := metav1.NewTime(t0.Add(-time.Hour))
	now := metav1.NewTime(t0)
	cond := func(typ string, status metav1.ConditionStatus, reason, msg string, gen int64, ltt metav1.Time) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: ltt}
	}

	for _, tc := range []struct {
		name     string
		existing []metav1.Condition
		desired  []metav1.Condition
		want     []metav1.Condition
	}{
		{
			name:     "adds Ready to a connection nobody has looked at yet",
			existing: nil,
			desired:  []metav1.Condition{cond("Ready", "False", "Progressing", "requesting a first token", 1, now)},
			want:     []metav1.Condition{cond("Ready", "False", "Progressing", "requesting a first token", 1, now)},
		},
		{
			name:     "keeps Ready's lastTransitionTime when a refresh keeps it True, and updates its message",
			existing: []metav1.Condition{cond("Ready", "True", "TokenValid", "valid until 2030-01-01T12:00:00Z", 1, earlier)},
			desired:  []metav1.Condition{cond("Ready", "True", "TokenValid", "valid until 2030-01-01T12:30:00Z", 2, now)},
			want:     []metav1.Condition{cond("Ready", "True", "TokenValid", "valid until 2030-01-01T12:30:00Z", 2, earlier)},
		},
		{
			name:     "moves Ready's lastTransitionTime when the token expires",
			existing: []metav1.Condition{cond("Ready", "True", "TokenValid", "valid until 2030-01-01T12:00:00Z", 1, earlier)},
			desired:  []metav1.Condition{cond("Ready", "False", "TokenExpired", "expired at 2030-01-01T12:00:00Z", 1, now)},
			want:     []metav1.Condition{cond("Ready", "False", "TokenExpired", "expired at 2030-01-01T12:00:00Z", 1, now)},
		},
		{
			name: "keeps RefreshFailed's lastTransitionTime while the failure's reason changes",
			existing: []metav1.Condition{
				cond("Ready", "True", "TokenValid", "m", 1, earlier),
				cond("RefreshFailed", "True", "Timeout", "no answer", 1, earlier),
				cond("Reconciling", "True", "Timeout", "retrying: no answer", 1, earlier),
			},
			desired: []metav1.Condition{
				cond("Ready", "True", "TokenValid", "m", 1, now),
				cond("RefreshFailed", "True", "InstanceUnavailable", "HTTP 503", 1, now),
				cond("Reconciling", "True", "InstanceUnavailable", "retrying: HTTP 503", 1, now),
			},
			want: []metav1.Condition{
				cond("Ready", "True", "TokenValid", "m", 1, earlier),
				cond("RefreshFailed", "True", "InstanceUnavailable", "HTTP 503", 1, earlier),
				cond("Reconciling", "True", "InstanceUnavailable", "retrying: HTTP 503", 1, earlier),
			},
		},
		{
			name: "adds RefreshFailed and Stalled when credentials are rejected",
			existing: []metav1.Condition{
				cond("Ready", "True", "TokenValid", "m", 1, earlier),
			},
			desired: []metav1.Condition{
				cond("Ready", "True", "TokenValid", "m", 1, now),
				cond("RefreshFailed", "True", "AuthenticationFailed", "rejected", 1, now),
				cond("Stalled", "True", "AuthenticationFailed", "rejected", 1, now),
			},
			want: []metav1.Condition{
				cond("Ready", "True", "TokenValid", "m", 1, earlier),
				cond("RefreshFailed", "True", "AuthenticationFailed", "rejected", 1, now),
				cond("Stalled", "True", "AuthenticationFailed", "rejected", 1, now),
			},
		},
		{
			name: "removes RefreshFailed, Stalled and Reconciling once a refresh succeeds",
			existing: []metav1.Condition{
				cond("Ready", "False", "AuthenticationFailed", "rejected", 1, earlier),
				cond("RefreshFailed", "True", "AuthenticationFailed", "rejected", 1, earlier),
				cond("Stalled", "True", "AuthenticationFailed", "rejected", 1, earlier),
				cond("Reconciling", "True", "Progressing", "requesting a first token", 1, earlier),
			},
			desired: []metav1.Condition{cond("Ready", "True", "TokenValid", "m", 2, now)},
			want:    []metav1.Condition{cond("Ready", "True", "TokenValid", "m", 2, now)},
		},
		{
			name: "swaps Stalled for Reconciling when a rejected request is followed by a transient failure",
			existing: []metav1.Condition{
				cond("Ready", "False", "AuthenticationFailed", "rejected", 1, earlier),
				cond("RefreshFailed", "True", "AuthenticationFailed", "rejected", 1, earlier),
				cond("Stalled", "True", "AuthenticationFailed", "rejected", 1, earlier),
			},
			desired: []metav1.Condition{
				cond("Ready", "False", "Timeout", "no answer", 2, now),
				cond("RefreshFailed", "True", "Timeout", "no answer", 2, now),
				cond("Reconciling", "True", "Timeout", "retrying: no answer", 2, now),
			},
			want: []metav1.Condition{
				cond("Ready", "False", "Timeout", "no answer", 2, earlier),
				cond("RefreshFailed", "True", "Timeout", "no answer", 2, earlier),
				cond("Reconciling", "True", "Timeout", "retrying: no answer", 2, now),
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			conds := append([]metav1.Condition(nil), tc.existing...)
			setConditions(&conds, tc.desired)
			g.Expect(conds).To(ConsistOf(tc.want))
		})
	}

	t.Run("a later reconcile in the same state changes nothing, so it writes nothing", func(t *testing.T) {
		g := NewWithT(t)
		expiry := t0.Add(20 * time.Minute)
		in := statusInput{now: t0, generation: 3, secretName: "snow-token", expiry: &expiry,
			failure: &failure{reason: "Timeout", message: "no complete answer in time", retryable: true}}
		var conds []metav1.Condition
		setConditions(&conds, conditions(in))
		first := append([]metav1.Condition(nil), conds...)

		in.now = t0.Add(7 * time.Minute)
		setConditions(&conds, conditions(in))
		g.Expect(conds).To(Equal(first))
	})
}
