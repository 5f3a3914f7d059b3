package plugin_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/plugin"
)

func TestStatusShowsAReadyConnectionAtAGlance(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	conn := createConnection(g, ns, "orders")
	setStatus(g, conn, readyStatus("orders-token"))
	createEvents(g, event(conn, corev1.EventTypeNormal, "TokenIssued",
		"obtained a first token from https://acme.service-now.com; it expires at 2030-01-02T10:24:00Z", -6*time.Minute))

	r := kubectlServicenow(kubeconfig(t, "default"), t0, "status", "orders", "-n", ns)

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(Equal(fmt.Sprintf(`Connection:    %s/orders
State:         Ready (TokenValid)
Instance:      https://acme.service-now.com
Grant:         ClientCredentials
Token Secret:  orders-token
Expires:       in 24m (2030-01-02T10:24:00Z)
Last refresh:  6m ago (2030-01-02T09:54:00Z)
Next refresh:  in 14m (2030-01-02T10:14:00Z)
Failures:      none since the last success
Conditions:
  TYPE   STATUS  REASON      SINCE   MESSAGE
  Ready  True    TokenValid  6m ago  Secret orders-token holds a token valid until 2030-01-02T10:24:00Z
Events (newest last):
  LAST SEEN  TYPE    REASON       MESSAGE
  6m ago     Normal  TokenIssued  obtained a first token from https://acme.service-now.com; it expires at 2030-01-02T10:24:00Z
`, ns)))
}

func TestStatusShowsWhyAFailingConnectionFails(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	conn := createConnection(g, ns, "orders")
	st := readyStatus("orders-token")
	st.ConsecutiveFailures = 3
	st.LastFailureTime = at(-time.Minute)
	st.NextRefreshTime = at(20 * time.Second)
	const unavailable = "ServiceNow answered 503 Service Unavailable"
	for _, typ := range []string{snowv1.ConditionRefreshFailed, snowv1.ConditionReconciling} {
		st.Conditions = append(st.Conditions, metav1.Condition{
			Type: typ, Status: metav1.ConditionTrue, Reason: "InstanceUnavailable", Message: unavailable,
			LastTransitionTime: *at(-5 * time.Minute), ObservedGeneration: 1,
		})
	}
	setStatus(g, conn, st)
	// The recorder aggregates repeated failures into one Event with a
	// series: three failures from 5 to 1 minute ago.
	failed := event(conn, corev1.EventTypeWarning, "InstanceUnavailable", unavailable, -5*time.Minute)
	failed.Series = &eventsv1.EventSeries{Count: 3, LastObservedTime: metav1.NewMicroTime(t0.Add(-time.Minute))}
	createEvents(g, failed)

	// The namespace comes from the kubeconfig's context: no -n.
	r := kubectlServicenow(kubeconfig(t, ns), t0, "status", "orders")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(SatisfyAll(
		MatchRegexp(`State:\s+Ready \(TokenValid\), refresh failing \(InstanceUnavailable\)\n`),
		MatchRegexp(`Expires:\s+in 24m \(2030-01-02T10:24:00Z\)\n`),
		MatchRegexp(`Next refresh:\s+in 20s \(2030-01-02T10:00:20Z\), a retry\n`),
		MatchRegexp(`Failures:\s+3 in a row, the last 60s ago \(2030-01-02T09:59:00Z\)\n`),
		MatchRegexp(`RefreshFailed\s+True\s+InstanceUnavailable\s+5m ago\s+`+unavailable+`\n`),
		MatchRegexp(`60s ago \(x3 over 4m\)\s+Warning\s+InstanceUnavailable\s+`+unavailable+`\n`),
	))
}

func TestStatusShowsOnlyTheConnectionsOwnEvents(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	conn := createConnection(g, ns, "orders")
	other := createConnection(g, ns, "crm")
	// An earlier connection named orders, deleted since: same name, other UID.
	earlier := conn.DeepCopy()
	earlier.UID = types.UID("00000000-0000-0000-0000-000000000001")
	createEvents(g,
		event(conn, corev1.EventTypeNormal, "TokenIssued", "this connection's event", -2*time.Minute),
		event(other, corev1.EventTypeWarning, "AuthenticationFailed", "another connection's event", -time.Minute),
		event(earlier, corev1.EventTypeWarning, "AuthenticationFailed", "an earlier connection's event", -time.Minute),
	)

	r := kubectlServicenow(kubeconfig(t, ns), t0, "status", "orders")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(ContainSubstring("this connection's event"))
	g.Expect(r.stdout).NotTo(ContainSubstring("another connection's event"))
	g.Expect(r.stdout).NotTo(ContainSubstring("an earlier connection's event"))
	// Nothing was reported yet: say so rather than show blanks.
	g.Expect(r.stdout).To(MatchRegexp(`State:\s+Unknown \(snowauth has not reported on this connection yet\)\n`))
	g.Expect(r.stdout).To(MatchRegexp(`Token Secret:\s+orders-token \(not written yet\)\n`))
}

func TestStatusStillShowsTheConnectionWhenRBACForbidsReadingEvents(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	conn := createConnection(g, ns, "orders")
	setStatus(g, conn, readyStatus("orders-token"))
	allow(g, ns, "reader", "get")

	r := kubectlServicenow(kubeconfig(t, ns), t0, "status", "orders", "--as", "reader")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(MatchRegexp(`State:\s+Ready \(TokenValid\)\n`))
	g.Expect(r.stdout).To(MatchRegexp(`Events \(newest last\):\n  <cannot list Events: .*forbidden.*>\n$`))
}

func TestStatusOfAMissingConnectionNamesTheNamespace(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)

	r := kubectlServicenow(kubeconfig(t, "default"), t0, "status", "orders", "-n", ns)

	g.Expect(r.err).To(MatchError(fmt.Sprintf(`ServiceNowConnection "orders" not found in namespace %q`, ns)))
	g.Expect(r.code).To(Equal(plugin.ExitFailure))
	g.Expect(r.stderr).To(ContainSubstring("Error: ServiceNowConnection \"orders\" not found"))
	g.Expect(r.stdout).To(BeEmpty())
}

func TestListShowsConnectionsAcrossNamespaces(t *testing.T) {
	g := NewWithT(t)
	teamA, teamB := env.Namespace(t), env.Namespace(t)
	orders := createConnection(g, teamA, "orders")
	setStatus(g, orders, readyStatus("orders-token"))
	createConnection(g, teamA, "new")
	crm := createConnection(g, teamB, "crm")
	failing := readyStatus("crm-token")
	failing.ExpiresAt = at(-3 * time.Minute)
	failing.Conditions = []metav1.Condition{
		{Type: snowv1.ConditionReady, Status: metav1.ConditionFalse, Reason: snowv1.ReasonTokenExpired,
			Message: "the token expired", LastTransitionTime: *at(-3 * time.Minute)},
		{Type: snowv1.ConditionRefreshFailed, Status: metav1.ConditionTrue, Reason: "AuthenticationFailed",
			Message: "ServiceNow answered 401 access_denied", LastTransitionTime: *at(-time.Hour)},
	}
	setStatus(g, crm, failing)
	kc := kubeconfig(t, teamB)
	ordersLine := fmt.Sprintf(`(?m)^%s\s+orders\s+TokenValid\s+in 24m\s+<none>$`, teamA)
	newLine := fmt.Sprintf(`(?m)^%s\s+new\s+Unknown\s+<none>\s+<none>$`, teamA)
	crmLine := fmt.Sprintf(`(?m)^%s\s+crm\s+TokenExpired\s+3m ago\s+AuthenticationFailed$`, teamB)

	all := kubectlServicenow(kc, t0, "list", "-A")
	g.Expect(all.err).NotTo(HaveOccurred())
	g.Expect(all.stdout).To(MatchRegexp(`^NAMESPACE\s+NAME\s+STATE\s+EXPIRES\s+FAILING\n`))
	g.Expect(all.stdout).To(SatisfyAll(MatchRegexp(ordersLine), MatchRegexp(newLine), MatchRegexp(crmLine)))

	onlyA := kubectlServicenow(kc, t0, "list", "-n", teamA)
	g.Expect(onlyA.err).NotTo(HaveOccurred())
	g.Expect(onlyA.stdout).To(SatisfyAll(MatchRegexp(ordersLine), MatchRegexp(newLine)))
	// No row of the other namespace's connection crm (the generated
	// namespace names may contain the letters "crm" themselves).
	g.Expect(onlyA.stdout).NotTo(Or(ContainSubstring(teamB), MatchRegexp(`(?m)^\S+\s+crm\s`)))

	// Without -n: the kubeconfig context's namespace.
	contextNS := kubectlServicenow(kc, t0, "list")
	g.Expect(contextNS.err).NotTo(HaveOccurred())
	g.Expect(contextNS.stdout).To(MatchRegexp(crmLine))
	g.Expect(contextNS.stdout).NotTo(ContainSubstring("orders"))
}

func TestListOfAnEmptyNamespaceSaysSoOnStderr(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)

	r := kubectlServicenow(kubeconfig(t, ns), t0, "list")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(BeEmpty())
	g.Expect(r.stderr).To(Equal(fmt.Sprintf("No ServiceNowConnections found in namespace %q.\n", ns)))
}

func TestRefreshSetsTheAnnotationToTheCurrentTime(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders", func(c *snowv1.ServiceNowConnection) {
		c.Annotations = map[string]string{"team": "payments"}
	})
	now := time.Date(2030, 1, 2, 10, 0, 0, 123456789, time.UTC)

	r := kubectlServicenow(kubeconfig(t, ns), now, "refresh", "orders")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(Equal(fmt.Sprintf("Requested a refresh of %s/orders "+
		"(servicenow.snowauth.dev/refresh-requested-at=2030-01-02T10:00:00.123456789Z).\n", ns)))
	var c snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "orders"}, &c)).To(Succeed())
	g.Expect(c.Annotations).To(Equal(map[string]string{
		snowv1.AnnotationRefreshRequestedAt: "2030-01-02T10:00:00.123456789Z",
		"team":                              "payments", // a merge patch leaves other annotations alone
	}))
}

func TestRefreshRefusesASuspendedConnection(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders", func(c *snowv1.ServiceNowConnection) { c.Spec.Suspend = true })

	r := kubectlServicenow(kubeconfig(t, ns), t0, "refresh", "orders", "--wait")

	g.Expect(r.err).To(MatchError(ContainSubstring("is suspended (spec.suspend is true)")))
	g.Expect(r.code).To(Equal(plugin.ExitFailure))
	g.Expect(annotation(g, ns, "orders")).To(BeEmpty())
}

func TestRefreshWaitGivesUpAfterTheTimeoutWhenNoOperatorActs(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")

	started := time.Now()
	r := kubectlServicenow(kubeconfig(t, ns), time.Time{}, "refresh", "orders", "--wait", "--timeout", "2s")

	g.Expect(r.err).To(MatchError(SatisfyAll(
		ContainSubstring("timed out after 2s: snowauth has not acted on refresh request"),
		ContainSubstring("is the operator running"),
	)))
	g.Expect(r.code).To(Equal(plugin.ExitNotReady))
	g.Expect(time.Since(started)).To(BeNumerically("<", 30*time.Second))
	g.Expect(annotation(g, ns, "orders")).NotTo(BeEmpty(), "the request itself was made")
}

func TestRefreshWaitFailsAtOnceWhenRBACForbidsWatching(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")
	allow(g, ns, "requester", "get", "patch")

	r := kubectlServicenow(kubeconfig(t, ns), time.Time{}, "refresh", "orders", "--wait", "--timeout", "1m", "--as", "requester")

	// The API server's reason, not a timeout that blames the operator.
	g.Expect(r.err).To(MatchError(ContainSubstring(`User "requester" cannot list resource "servicenowconnections"`)))
	g.Expect(r.code).To(Equal(plugin.ExitFailure), "forbidden is an error, not a connection that is not Ready")
	g.Expect(annotation(g, ns, "orders")).NotTo(BeEmpty(), "patch was allowed, so the request was made")
}

func TestRefreshWaitStopsWhenAnotherRequestReplacesIt(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")
	now := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	ours := now.Format(time.RFC3339Nano)

	kc := kubeconfig(t, ns)

	done := make(chan result, 1)
	go func() { done <- kubectlServicenow(kc, now, "refresh", "orders", "--wait", "--timeout", "1m") }()
	g.Eventually(func(g Gomega) string { return annotation(g, ns, "orders") }).Should(Equal(ours))
	var c snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "orders"}, &c)).To(Succeed())
	patch := client.MergeFrom(c.DeepCopy())
	c.Annotations[snowv1.AnnotationRefreshRequestedAt] = "someone-else"
	g.Expect(env.Client.Patch(context.Background(), &c, patch)).To(Succeed())

	var r result
	g.Eventually(done).WithTimeout(30 * time.Second).Should(Receive(&r))
	g.Expect(r.err).To(MatchError(ContainSubstring(
		"another refresh request (servicenow.snowauth.dev/refresh-requested-at=someone-else) replaced this one")))
}

func TestStatusShowsEachCredentialsHorizonAndHowSnowauthKnowsIt(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	conn := createConnection(g, ns, "orders")
	st := readyStatus("orders-token")
	st.Horizons = []snowv1.Horizon{{Kind: snowv1.HorizonRefreshToken, At: *at(10 * 24 * time.Hour),
		Source: "key refresh_token_expires_at of credentials Secret orders-credentials"}}
	setStatus(g, conn, st)

	r := kubectlServicenow(kubeconfig(t, "default"), t0, "status", "orders", "-n", ns)

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(ContainSubstring("Failures:      none since the last success\n" +
		"Horizon:       RefreshToken ends in 10d (2030-01-12T10:00:00Z) (key refresh_token_expires_at of credentials Secret orders-credentials)\n"))
}
