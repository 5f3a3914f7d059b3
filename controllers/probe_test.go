package controllers_test

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// Probe paths of the tests: a table the application reads, and one it
// also needs.
const (
	incidents = "/api/now/table/incident?sysparm_limit=1&sysparm_fields=sys_id"
	changes   = "/api/now/v2/table/change_request?sysparm_limit=1"
)

// probing sets spec.probe.paths.
func probing(paths ...string) func(*snowv1.ServiceNowConnection) {
	return func(c *snowv1.ServiceNowConnection) { c.Spec.Probe = &snowv1.ProbeSpec{Paths: paths} }
}

// authorized is the Authorized condition's status and reason, for
// Eventually.
func (h *harness) authorized(name string) func() string {
	return func() string {
		c := h.condition(name, snowv1.ConditionAuthorized)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason
	}
}

func TestProbeOnAPathTheInstanceRefusesReportsAuthorizedFalseWhileTheTokenIsStored(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.sim.SetTableAccess("incident", simulator.TableAccess{Rows: 3})
	h.sim.SetTableAccess("change_request", simulator.TableAccess{Status: http.StatusForbidden, Message: "Missing required api access scope"})
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials, probing(incidents, changes))

	g.Eventually(h.authorized("orders"), soon, interval).Should(Equal("False/ProbeForbidden"))
	g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"), "a refused probe is no token failure")
	g.Expect(h.condition("orders", snowv1.ConditionRefreshFailed)).To(BeNil())
	g.Expect(h.accessToken("orders-token")()).NotTo(BeEmpty(), "the token was stored")
	conn := h.get("orders")
	g.Expect(conn.Status.Reason).To(Equal(snowv1.ReasonTokenValid))
	g.Expect(conn.Status.ConsecutiveFailures).To(BeZero())
	msg := h.condition("orders", snowv1.ConditionAuthorized).Message
	g.Expect(msg).To(ContainSubstring("GET " + changes))
	g.Expect(msg).To(ContainSubstring(`"Missing required api access scope"`))
	g.Expect(msg).NotTo(ContainSubstring(h.accessToken("orders-token")()))

	g.Expect(conn.Status.Probe).NotTo(BeNil())
	g.Expect(conn.Status.Probe.Time.Time).To(Equal(conn.Status.LastRefreshTime.Time), "probed right after the token")
	g.Expect(conn.Status.Probe.Paths).To(HaveLen(2))
	g.Expect(conn.Status.Probe.Paths[0]).To(Equal(snowv1.ProbePathStatus{Path: incidents, Result: snowv1.ProbeAuthorized, StatusCode: 200, Rows: ptr(int32(1))}))
	g.Expect(conn.Status.Probe.Paths[1].Result).To(Equal(snowv1.ProbeForbidden))
	g.Expect(conn.Status.Probe.Paths[1].StatusCode).To(Equal(int32(403)))
	g.Eventually(h.eventReasons, soon, interval).Should(ContainElement(snowv1.ReasonProbeForbidden))

	// The probe runs with a new token, not with every reconcile.
	probed := h.sim.TableRequests("change_request")
	g.Expect(probed).To(Equal(1))
	h.annotate("orders", "example.com/touched", "1")
	h.annotate("orders", "example.com/touched", "2")
	g.Consistently(func() int { return h.sim.TableRequests("change_request") }, 2*time.Second, interval).Should(Equal(probed))

	// An administrator adds the scope: the next token is probed and passes.
	h.sim.SetTableAccess("change_request", simulator.TableAccess{Rows: 1})
	h.requestRefresh("orders", "after-the-scope-was-added")
	g.Eventually(h.authorized("orders"), soon, interval).Should(Equal("True/ProbeSucceeded"))
	g.Expect(h.sim.TableRequests("change_request")).To(Equal(probed + 1))
	g.Eventually(h.eventReasons, soon, interval).Should(ContainElement(snowv1.ReasonProbeSucceeded))
}

func TestProbeNotesATableQueryThatReturnsNoRowsAndNeverHoldsUpTheToken(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	// ACLs hide every incident; the change_request table does not answer
	// at all (the probe gives up after the client's timeout).
	h.sim.SetTableAccess("incident", simulator.TableAccess{Rows: 0})
	h.credentials("creds", h.clientCredentials())
	h.connection("acl", "creds", snowv1.GrantClientCredentials, probing(incidents))

	g.Eventually(h.authorized("acl"), soon, interval).Should(Equal("True/ProbeSucceeded"))
	g.Expect(h.condition("acl", snowv1.ConditionAuthorized).Message).To(ContainSubstring(
		"GET " + incidents + " returned no rows: ACLs may hide records from this user"))
	g.Expect(h.get("acl").Status.Probe.Paths[0].Rows).To(Equal(ptr(int32(0))))

	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultHang, Path: "/api/now/v2/table/change_request"})
	h.connection("slow", "creds", snowv1.GrantClientCredentials, probing(changes))
	g.Eventually(h.authorized("slow"), soon, interval).Should(Equal("False/ProbeFailed"))
	g.Expect(h.readyStatus("slow")()).To(Equal("True/TokenValid"))
	g.Expect(h.accessToken("slow-token")()).NotTo(BeEmpty())
	g.Expect(h.get("slow").Status.Probe.Paths[0].Message).To(ContainSubstring("no complete answer"))
}

func TestProbeAuthorizedOnEveryPathAndItsMetrics(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	const rule = "5f2e4a1bdb3313003a7a52e5ae9619c4"
	h.sim.SetTableAccess("incident", simulator.TableAccess{Rows: 5})
	h.sim.SetTableAccess("change_request", simulator.TableAccess{Rows: 2})
	h.sim.SetRateLimit(simulator.RateLimitRule{Limit: 1000, SysID: rule})
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials, probing(incidents, changes))
	h.connection("plain", "creds", snowv1.GrantClientCredentials)

	g.Eventually(h.authorized("orders"), soon, interval).Should(Equal("True/ProbeSucceeded"))
	g.Expect(h.condition("orders", snowv1.ConditionAuthorized).Message).NotTo(ContainSubstring("ACLs"))
	rl := h.get("orders").Status.Probe.Paths[0].RateLimit
	g.Expect(rl).NotTo(BeNil())
	g.Expect(rl.Limit).To(Equal(int32(1000)))
	g.Expect(rl.Rule).To(Equal(rule))
	g.Expect(rl.ResetAt.Time).To(Equal(h.sim.Now().Truncate(time.Hour).Add(time.Hour)))
	g.Eventually(h.readyStatus("plain"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.condition("plain", snowv1.ConditionAuthorized)).To(BeNil(), "no spec.probe, no Authorized")
	g.Expect(h.get("plain").Status.Probe).To(BeNil())

	orders := map[string]string{"namespace": h.ns, "name": "orders"}
	g.Eventually(func() bool {
		_, ok := value(h.scrape(), "snowauth_connection_probe_authorized", orders)
		return ok
	}, soon, interval).Should(BeTrue())
	m := h.scrape()
	g.Expect(h.series(m, "snowauth_connection_probe_authorized", orders)).To(Equal(1.0))
	g.Expect(h.series(m, "snowauth_connection_ratelimit_limit", map[string]string{"namespace": h.ns, "name": "orders", "rule": rule})).To(Equal(1000.0))
	g.Expect(h.series(m, "snowauth_connection_ratelimit_reset_timestamp_seconds", orders)).To(Equal(float64(rl.ResetAt.Unix())))
	_, plainProbed := value(m, "snowauth_connection_probe_authorized", map[string]string{"namespace": h.ns, "name": "plain"})
	g.Expect(plainProbed).To(BeFalse())
	g.Expect(h.series(m, "snowauth_probe_requests_total", map[string]string{"result": "authorized", "reason": ""})).To(BeNumerically(">=", 2))
	g.Expect(m["snowauth_connection_ratelimit_remaining"]).To(BeEmpty(), "ServiceNow sends no count of the requests left")

	// Removing spec.probe removes the condition, status.probe and the series.
	conn := h.get("orders")
	patch := client.MergeFrom(conn.DeepCopy())
	conn.Spec.Probe = nil
	g.Expect(env.Client.Patch(h.ctx, conn, patch)).To(Succeed())
	g.Eventually(h.authorized("orders"), soon, interval).Should(BeEmpty())
	g.Expect(h.get("orders").Status.Probe).To(BeNil())
	g.Eventually(func() bool {
		_, ok := value(h.scrape(), "snowauth_connection_ratelimit_limit", orders)
		return ok
	}, soon, interval).Should(BeFalse())

	// A refused probe shows in the metrics as 0 and as a counted refusal.
	h.sim.SetTableAccess("incident", simulator.TableAccess{Status: http.StatusForbidden, Message: "Missing required api access scope"})
	conn = h.get("orders")
	patch = client.MergeFrom(conn.DeepCopy())
	conn.Spec.Probe = &snowv1.ProbeSpec{Paths: []string{incidents}}
	g.Expect(env.Client.Patch(h.ctx, conn, patch)).To(Succeed())
	g.Eventually(h.authorized("orders"), soon, interval).Should(Equal("False/ProbeForbidden"))
	g.Eventually(func() float64 {
		v, _ := value(h.scrape(), "snowauth_connection_probe_authorized", orders)
		return v
	}, soon, interval).Should(Equal(0.0))
	g.Expect(h.series(h.scrape(), "snowauth_probe_requests_total", map[string]string{"result": "forbidden", "reason": ""})).To(BeNumerically(">=", 1))
	g.Expect(h.get("orders").Status.Conditions).To(ContainElement(And(
		HaveField("Type", snowv1.ConditionReady), HaveField("Status", metav1.ConditionTrue))))
}

func ptr[T any](v T) *T { return &v }
