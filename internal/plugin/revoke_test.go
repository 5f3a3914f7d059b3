package plugin_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/plugin"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

func TestRevokeWaitRevokesTheLeakedTokenAndReportsTheNewOne(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	sim := startOperator(t, ns)
	readyConnection(g, sim, ns, "orders")
	leaked := tokenIn(g, ns, "orders-token")

	r := kubectlServicenow(kubeconfig(t, ns), time.Time{}, "revoke", "orders", "--wait", "--timeout", "1m")

	g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
	g.Expect(r.code).To(Equal(plugin.ExitOK))
	g.Expect(r.stdout).To(MatchRegexp(`^Requested the revocation of the access token of ` + ns + `/orders \(servicenow.snowauth.dev/revoke-requested-at=\S+\)\.\n` +
		`Revoked the access token of ` + ns + `/orders: Secret orders-token holds a new token that expires in \d+m\S* \(\S+Z\)\.\n$`))
	fresh := tokenIn(g, ns, "orders-token")
	g.Expect(fresh).NotTo(Equal(leaked))
	expiry, ok := sim.TokenExpiry(leaked)
	g.Expect(ok).To(BeTrue())
	g.Expect(expiry).To(BeTemporally("<=", sim.Now()), "the leaked token is revoked at the instance")
	g.Expect(sim.Revocations(simulator.RevokedAccessToken)).To(Equal(1))
	g.Expect(r.stdout + r.stderr).NotTo(Or(ContainSubstring(leaked), ContainSubstring(fresh)))
}

func TestRevokeSetsTheAnnotationToTheCurrentTime(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders", func(c *snowv1.ServiceNowConnection) {
		c.Annotations = map[string]string{"team": "payments"}
	})
	now := time.Date(2030, 1, 2, 10, 0, 0, 123456789, time.UTC)

	r := kubectlServicenow(kubeconfig(t, ns), now, "revoke", "orders")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(Equal(fmt.Sprintf("Requested the revocation of the access token of %s/orders "+
		"(servicenow.snowauth.dev/revoke-requested-at=2030-01-02T10:00:00.123456789Z).\n", ns)))
	var c snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "orders"}, &c)).To(Succeed())
	g.Expect(c.Annotations).To(Equal(map[string]string{
		snowv1.AnnotationRevokeRequestedAt: "2030-01-02T10:00:00.123456789Z",
		"team":                             "payments",
	}))
}

func TestRevokeRefusesASuspendedConnection(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders", func(c *snowv1.ServiceNowConnection) { c.Spec.Suspend = true })

	r := kubectlServicenow(kubeconfig(t, ns), t0, "revoke", "orders", "--wait")

	g.Expect(r.err).To(MatchError(ContainSubstring("is suspended (spec.suspend is true)")))
	g.Expect(r.code).To(Equal(plugin.ExitFailure))
	var c snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "orders"}, &c)).To(Succeed())
	g.Expect(c.Annotations).NotTo(HaveKey(snowv1.AnnotationRevokeRequestedAt))
}

func TestRevokeWaitSaysWhyWhenServiceNowDoesNotRevoke(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	sim := startOperator(t, ns)
	readyConnection(g, sim, ns, "orders")
	sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503, Path: "/oauth_revoke_token.do"})

	r := kubectlServicenow(kubeconfig(t, ns), time.Time{}, "revoke", "orders", "--wait", "--timeout", "3s")

	g.Expect(r.code).To(Equal(plugin.ExitNotReady))
	g.Expect(r.err).To(MatchError(SatisfyAll(
		HavePrefix("timed out after 3s: "+ns+"/orders: could not revoke the access token in Secret orders-token"),
		ContainSubstring("HTTP 503"),
	)))
	g.Expect(r.stdout).NotTo(ContainSubstring("Revoked"))
}

func TestRevokeWaitGivesUpAfterTheTimeoutWhenNoOperatorActs(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")

	r := kubectlServicenow(kubeconfig(t, ns), time.Time{}, "revoke", "orders", "--wait", "--timeout", "2s")

	g.Expect(r.code).To(Equal(plugin.ExitNotReady))
	g.Expect(r.err).To(MatchError(SatisfyAll(
		ContainSubstring("timed out after 2s: snowauth has not acted on revoke request"),
		ContainSubstring("is the operator running"),
	)))
}
