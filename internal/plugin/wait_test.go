package plugin_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/plugin"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// The OAuth client the simulator knows and the credentials Secret holds.
const (
	clientID     = "plugin-test-client"
	clientSecret = "CANARY-plugin-client-secret-2b7e"
	appUser      = "svc.snowauth"
)

// startOperator starts a ServiceNow simulator (30-minute tokens, so nothing
// refreshes on its own during a test) and a real manager watching only ns,
// wired like cmd/main.go; both stop when the test ends. It is the minimal
// part of controllers/suite_test.go's harness these tests need.
func startOperator(t *testing.T, ns string) *simulator.Simulator {
	t.Helper()
	g := NewWithT(t)
	sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: 30 * time.Minute, ClientCredentialsEnabled: true})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(sim.Close)
	sim.AddUser(simulator.User{Username: appUser, Password: "unused-app-user-password"})
	sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser})

	env.StartManager(t, testenv.Manager{Namespaces: []string{ns}, Tokens: testenv.ClientFor(t, sim, 5*time.Second)})
	return sim
}

// readyConnection creates a credentials Secret for sim and a connection
// named name using it, and waits until snowauth has written its first
// token.
func readyConnection(g *WithT, sim *simulator.Simulator, ns, name string) {
	ctx := context.Background()
	creds := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-credentials"},
		StringData: map[string]string{
			// localhost, not 127.0.0.1: the manager's allowlist holds domains.
			"instance":      sim.LocalhostURL(),
			"client_id":     clientID,
			"client_secret": clientSecret,
		},
	}
	g.Expect(env.Client.Create(ctx, creds)).To(Succeed())
	createConnection(g, ns, name)
	g.Eventually(func(g Gomega) {
		var c snowv1.ServiceNowConnection
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &c)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(c.Status.Conditions, snowv1.ConditionReady)).To(BeTrue())
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// tokenIn reads the access token snowauth wrote, to prove it is never printed.
func tokenIn(g *WithT, ns, secret string) string {
	var s corev1.Secret
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: secret}, &s)).To(Succeed())
	tok := string(s.Data[snowv1.TokenKeyAccessToken])
	g.Expect(tok).NotTo(BeEmpty())
	return tok
}

func TestRefreshWaitReportsSuccessOnceTheOperatorRefreshed(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	sim := startOperator(t, ns)
	readyConnection(g, sim, ns, "orders")
	before := sim.TokenRequests(clientID, "client_credentials")
	// A slow answer holds the refresh open for a second, so a --wait that
	// returned before snowauth finished would be caught below.
	sim.SetFault(simulator.Fault{Kind: simulator.FaultLatency, Latency: time.Second, Times: 1})
	requested := time.Now()

	r := kubectlServicenow(kubeconfig(t, ns), time.Time{}, "refresh", "orders", "--wait", "--timeout", "1m")

	g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
	g.Expect(r.code).To(Equal(plugin.ExitOK))
	g.Expect(r.stdout).To(MatchRegexp(`^Requested a refresh of ` + ns + `/orders \(servicenow.snowauth.dev/refresh-requested-at=\S+\)\.\n` +
		`Refreshed ` + ns + `/orders: Secret orders-token holds a token that expires in \d+m\S* \(\S+Z\)\.\n$`))
	var c snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "orders"}, &c)).To(Succeed())
	g.Expect(c.Status.LastHandledRefreshRequest).To(Equal(c.Annotations[snowv1.AnnotationRefreshRequestedAt]),
		"--wait returned before snowauth had handled the request")
	g.Expect(c.Status.LastRefreshTime.Time).To(BeTemporally(">=", requested.Truncate(time.Second)))
	g.Expect(sim.TokenRequests(clientID, "client_credentials")).To(BeNumerically(">", before))
	g.Expect(r.stdout + r.stderr).NotTo(ContainSubstring(tokenIn(g, ns, "orders-token")))
}

func TestRefreshWaitReportsTheFailureWhenServiceNowFailsTheRefresh(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	sim := startOperator(t, ns)
	readyConnection(g, sim, ns, "orders")
	sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503})

	r := kubectlServicenow(kubeconfig(t, ns), time.Time{}, "refresh", "orders", "--wait", "--timeout", "1m")

	g.Expect(r.code).To(Equal(plugin.ExitNotReady))
	g.Expect(r.err).To(MatchError(SatisfyAll(
		HavePrefix("the refresh of "+ns+"/orders failed: InstanceUnavailable: "),
		ContainSubstring("503"),
		MatchRegexp(`\(the previous token in Secret orders-token stays valid until \S+Z, in \d+m\S*\)$`),
	)))
	g.Expect(r.stderr).To(HavePrefix("Error: the refresh of "))
	g.Expect(r.stdout).To(HavePrefix("Requested a refresh of "))
	g.Expect(r.stdout).NotTo(ContainSubstring("Refreshed"))
}
