package controllers_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"

	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// Tests of the promise that status never lies and bad input loses nothing:
// whatever the API server or ServiceNow refuses, the token Secret keeps its
// last good token, Ready says what that token is worth now, and messages
// stay short and free of secrets.

// policy installs a ValidatingAdmissionPolicy, bound to the harness's
// namespace only, that refuses operations on resources whose object fails
// expression, with message. It returns a function that removes it. The API
// server applies a new policy within a moment: probe is an object the
// policy also refuses, written until it is refused.
func (h *harness) policy(name string, rules []admissionv1.NamedRuleWithOperations, expression, message string,
	reason metav1.StatusReason, probe func() error) (remove func()) {
	h.t.Helper()
	name = name + "-" + h.ns
	failure := admissionv1.Fail
	p := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy:    &failure,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: rules},
			Validations:      []admissionv1.Validation{{Expression: expression, Message: message, Reason: &reason}},
		},
	}
	b := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: h.ns},
			}},
		},
	}
	h.g.Expect(env.Client.Create(h.ctx, p)).To(Succeed())
	h.g.Expect(env.Client.Create(h.ctx, b)).To(Succeed())
	removed := false
	remove = func() {
		if removed {
			return
		}
		removed = true
		h.g.Expect(client.IgnoreNotFound(env.Client.Delete(h.ctx, b))).To(Succeed())
		h.g.Expect(client.IgnoreNotFound(env.Client.Delete(h.ctx, p))).To(Succeed())
		h.g.Eventually(probe, soon, interval).Should(Succeed(), "the policy is gone")
	}
	h.t.Cleanup(remove)
	h.g.Eventually(probe, soon, interval).Should(MatchError(ContainSubstring(message)), "the policy is in force")
	return remove
}

// rule matches operations on one resource of one API group.
func rule(group, version, resource string, ops ...admissionv1.OperationType) []admissionv1.NamedRuleWithOperations {
	return []admissionv1.NamedRuleWithOperations{{RuleWithOperations: admissionv1.RuleWithOperations{
		Operations: ops,
		Rule:       admissionv1.Rule{APIGroups: []string{group}, APIVersions: []string{version}, Resources: []string{resource}},
	}}}
}

func TestRefusedTokenSecretWriteTurnsReadyFalseAtExpiryAndAsksServiceNowOnce(t *testing.T) {
	h := newHarness(t, 20*time.Second)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	before := h.tokenSecret("orders-token").Data
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(Equal(1))

	// A policy such as Kyverno's or Gatekeeper's freezes the token Secret.
	probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "probe"}}
	g.Expect(env.Client.Create(h.ctx, probe)).To(Succeed())
	const refusal = "Secrets in this namespace are frozen by the change-freeze policy"
	remove := h.policy("freeze", rule("", "v1", "secrets", admissionv1.Update),
		"!(object.metadata.name in ['orders-token', 'probe'])", refusal, metav1.StatusReasonForbidden,
		func() error {
			p := &corev1.Secret{}
			if err := env.Client.Get(h.ctx, client.ObjectKeyFromObject(probe), p); err != nil {
				return err
			}
			p.StringData = map[string]string{"touched": time.Now().String()}
			return env.Client.Update(h.ctx, p)
		})

	// The refresh is refused: RefreshFailed names the write and quotes the
	// API server, the backoff is in status, and Ready turns False when the
	// token in the Secret expires.
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("TokenSecretWriteFailed"))
	failed := h.condition("orders", snowv1.ConditionRefreshFailed)
	g.Expect(failed.Message).To(ContainSubstring(refusal))
	g.Expect(failed.Message).To(ContainSubstring("orders-token"))
	g.Expect(h.conditionReason("orders", snowv1.ConditionReconciling)()).To(Equal("TokenSecretWriteFailed"))
	st := h.get("orders").Status
	g.Expect(st.ConsecutiveFailures).To(BeNumerically(">=", 1))
	g.Expect(st.NextRefreshTime).NotTo(BeNil())
	g.Eventually(h.eventReasons, soon, interval).Should(ContainElement("TokenSecretWriteFailed"))
	metrics := h.scrape()
	g.Expect(h.series(metrics, "snowauth_connection_refresh_failed", map[string]string{"reason": "TokenSecretWriteFailed"})).To(Equal(1.0))

	g.Eventually(h.readyStatus("orders"), 30*time.Second, interval).Should(Equal("False/TokenExpired"))
	g.Expect(h.condition("orders", snowv1.ConditionReady).Message).To(ContainSubstring("refused to write Secret orders-token"))
	g.Expect(h.tokenSecret("orders-token").Data).To(Equal(before), "a refused write never blanks the last token")
	// The retries write the token obtained once: ServiceNow saw one
	// request since the policy.
	g.Consistently(h.tokenRequests(simulator.GrantClientCredentials), 3*time.Second, interval).Should(Equal(2))

	// Without the policy, the kept token (or a new one if it expired
	// meanwhile) is written and the connection is Ready again.
	remove()
	g.Eventually(h.readyStatus("orders"), 2*time.Minute, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.condition("orders", snowv1.ConditionRefreshFailed)).To(BeNil())
	g.Expect(h.tokenSecret("orders-token").Data[snowv1.TokenKeyExpiresAt]).NotTo(Equal(before[snowv1.TokenKeyExpiresAt]))
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(BeNumerically("<=", 3))
}

func TestStatusRefusedByAPolicyStillReportsTheConditionsWithoutAskingAgain(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())

	// A policy refuses one status field snowauth writes; a probe
	// connection, never reconciled by anyone else, shows when it applies.
	h.connection("probe", "missing", snowv1.GrantClientCredentials, func(c *snowv1.ServiceNowConnection) { c.Spec.Suspend = true })
	const refusal = "status.tokenSecretName is not allowed in this namespace"
	h.policy("no-secret-name", rule(snowv1.GroupVersion.Group, snowv1.GroupVersion.Version, "servicenowconnections/status", admissionv1.Update),
		"!has(object.status.tokenSecretName) || object.metadata.name == 'unrelated'", refusal, metav1.StatusReasonInvalid,
		func() error {
			c := h.get("probe")
			patch := client.MergeFrom(c.DeepCopy())
			c.Status.TokenSecretName = "probe-token"
			return env.Client.Status().Patch(h.ctx, c, patch)
		})

	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	st := h.get("orders").Status
	g.Expect(st.TokenSecretName).To(BeEmpty(), "the refused field was left out")
	g.Expect(st.ExpiresAt).NotTo(BeNil())
	g.Expect(st.NextRefreshTime).NotTo(BeNil())
	g.Consistently(h.tokenRequests(simulator.GrantClientCredentials), 3*time.Second, interval).Should(Equal(1),
		"the schedule was written, so no reconcile asks ServiceNow again")
	g.Expect(h.logs.String()).To(ContainSubstring("status was refused"))
}

func TestRejectedRequestIsNotSentAgainWhenTheConnectionIsRelabelled(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	d := h.clientCredentials()
	d["client_secret"] = "CANARY-wrong-secret"
	h.credentials("creds", d)
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("AuthenticationFailed"))
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(Equal(1))

	// Labels and an unrelated annotation change; each wakes the reconciler
	// (annotations do, by the refresh-request predicate).
	c := h.get("orders")
	patch := client.MergeFrom(c.DeepCopy())
	c.Labels = map[string]string{"team": "orders"}
	c.Annotations = map[string]string{"example.com/owner": "team-a"}
	g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
	g.Consistently(h.tokenRequests(simulator.GrantClientCredentials), 3*time.Second, interval).Should(Equal(1))
	g.Expect(h.conditionReason("orders", snowv1.ConditionRefreshFailed)()).To(Equal("AuthenticationFailed"))
}

func TestHostileErrorAnswersYieldBoundedMessagesWithoutTheSecret(t *testing.T) {
	// Every form in which a hostile or broken server might echo the
	// client secret back.
	forms := secretForms(clientSecret)
	cases := []struct {
		name  string
		fault simulator.Fault
	}{
		{"an error body that echoes the client secret escaped, with control characters", simulator.Fault{
			Kind: simulator.FaultResponse, Status: 401, ContentType: "application/json", Path: "/oauth_token.do",
			Body: fmt.Sprintf(`{"error":"invalid_client\u001b[31m","error_description":"client %s (%s) or %s or %s or %s rejected\r\nX-Injected: yes"}`,
				jsonEscaped(clientSecret), forms["percent-encoded"], forms["base64"], forms["hex"], strings.Repeat("x", 60_000)),
		}},
		{"a redirect to a 60 KB Location that carries the secret", simulator.Fault{
			Kind: simulator.FaultRedirect, Status: 302, Path: "/oauth_token.do",
			Location: "https://evil.example.com/" + strings.Repeat("a", 60_000) + "?client_secret=" + url.QueryEscape(clientSecret),
		}},
		{"an HTML error page that quotes the request", simulator.Fault{
			Kind: simulator.FaultResponse, Status: 500, ContentType: "text/html", Path: "/oauth_token.do",
			Body: "<html><body>client_secret=" + clientSecret + "\x00\x07" + strings.Repeat("<p>", 20_000) + "</body></html>",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 30*time.Minute)
			g := h.g
			h.sim.SetFault(tc.fault)
			h.credentials("creds", h.clientCredentials())
			h.connection("orders", "creds", snowv1.GrantClientCredentials)
			g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).ShouldNot(BeEmpty())
			g.Eventually(h.warningNotes, soon, interval).ShouldNot(BeEmpty())

			texts := map[string]string{}
			for _, c := range h.get("orders").Status.Conditions {
				texts["condition "+c.Type] = c.Message
				g.Expect(len(c.Message)).To(BeNumerically("<=", 1024), "condition %s", c.Type)
			}
			for i, note := range h.warningNotes() {
				texts[fmt.Sprintf("event %d", i)] = note
				g.Expect(len(note)).To(BeNumerically("<=", 1024), "Events over 1 KiB are dropped")
			}
			texts["logs"] = h.logs.String()
			for where, text := range texts {
				if where != "logs" {
					g.Expect(strings.ContainsFunc(text, unicode.IsControl)).To(BeFalse(), "%s has control characters: %q", where, text)
					g.Expect(text).NotTo(ContainSubstring("evil.example.com/aaaa"), "%s quotes the Location", where)
				}
				for form, secret := range forms {
					g.Expect(strings.Contains(text, secret)).To(BeFalse(), "%s holds the client secret %s", where, form)
				}
			}
		})
	}
}

// warningNotes lists the notes of the Warning Events in the harness's
// namespace.
func (h *harness) warningNotes() []string {
	var events eventsv1.EventList
	if err := env.Client.List(h.ctx, &events, client.InNamespace(h.ns)); err != nil {
		return nil
	}
	var notes []string
	for _, e := range events.Items {
		if e.Type == corev1.EventTypeWarning {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

// secretForms is s as it is and in the encodings it could travel in.
func secretForms(s string) map[string]string {
	var pct strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&pct, "%%%02X", s[i])
	}
	return map[string]string{
		"as it is":        s,
		"percent-encoded": pct.String(),
		"JSON-escaped":    jsonEscaped(s),
		"base64":          base64.StdEncoding.EncodeToString([]byte(s)),
		"base64url":       base64.RawURLEncoding.EncodeToString([]byte(s)),
		"hex":             hex.EncodeToString([]byte(s)),
	}
}

// jsonEscaped writes every character of s as a JSON \u escape.
func jsonEscaped(s string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}
