package reliability_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// replicaPair starts two manager processes electing a leader in w's
// namespace and returns the leader and the standby.
func replicaPair(w *world) (leading, standby *replica) {
	w.t.Helper()
	caFile := filepath.Join(w.t.TempDir(), "ca.pem")
	w.g.Expect(os.WriteFile(caFile, w.sim.CACertPEM(), 0o600)).To(Succeed())
	a := startReplica(w.t, w.ns, "replica-a", caFile)
	b := startReplica(w.t, w.ns, "replica-b", caFile)
	leading = leader(w.t, a, b)
	standby = a
	if leading == a {
		standby = b
	}
	return leading, standby
}

// A leader killed (SIGKILL: no lease release) while its token request is
// in flight costs each connection at most one more token request, and no
// application ever reads a missing, blank or expired token: the standby
// takes over once the lease runs out (controller-runtime's 15 s; the
// manager has no flags for it) and refreshes before the old tokens expire.
func TestTokensStayValidWhenTheLeaderIsKilledWhileATokenRequestIsInFlight(t *testing.T) {
	t.Parallel()
	// Two-minute tokens: the refresh comes 67-79 s in, leaving at least
	// 40 s for the lease to run out (15 s, some 17-20 s to a takeover on
	// this machine) and the standby to refresh.
	w := newWorld(t, env, 2*time.Minute)
	names := []string{"orders", "billing", "hr"}
	leading, standby := replicaPair(w)
	t.Logf("%s leads, %s stands by", leading.Name, standby.Name)
	w.connect(names...)
	w.waitReady(names...)
	w.g.Expect(w.requestsOf(names)).To(HaveEach(1))
	first := map[string]time.Time{}
	for _, n := range names {
		first[n] = w.expiresAt(n)
	}
	s := startSampler(t, w.env.Client, w.sim, time.Now, w.tokenSecretKeys(names)...)

	// Every token request now takes 20 s; the first refresh to reach
	// ServiceNow is the one in flight when the leader dies.
	w.sim.SetFault(simulator.Fault{Kind: simulator.FaultLatency, Path: "/oauth_token.do", Latency: 20 * time.Second})
	w.g.Eventually(func() int { return w.sim.TokenRequests("", "") }, 2*time.Minute, 10*time.Millisecond).
		Should(BeNumerically(">", len(names)), "a refresh reached ServiceNow")
	leading.Kill()
	killed := time.Now()
	w.sim.ClearFault()
	log := w.sim.TokenRequestLog()
	inFlight := log[len(log)-1].ClientID
	t.Logf("killed %s while the refresh of client %s was in flight (%d refreshes in flight)", leading.Name, inFlight, len(log)-len(names))

	w.g.Eventually(standby.leads, eventually, interval).Should(BeTrue(), "the standby takes over")
	takeover := since(killed)
	for _, n := range names {
		w.g.Eventually(func() time.Time { return w.expiresAt(n) }, eventually, interval).Should(BeTemporally(">", first[n]),
			"connection %s is refreshed", n)
	}
	refreshed := since(killed)
	t.Logf("takeover after SIGKILL: the standby led %s after the kill; every token was refreshed %s after it", takeover, refreshed)

	// Nothing more is asked for: each connection made its first request
	// and one refresh, plus at most the one lost with the leader.
	w.g.Consistently(func() map[string]int { return w.requestsOf(names) }, 3*time.Second, interval).Should(HaveEach(BeNumerically("<=", 3)))
	counts := w.requestsOf(names)
	for _, n := range names {
		t.Logf("connection %s: %d token requests, %d beyond the first token and one refresh", n, counts[n], counts[n]-2)
		w.g.Expect(counts[n]).To(BeNumerically(">=", 2), "connection %s was refreshed", n)
	}
	w.g.Expect(w.sim.TokenRequestLog()[len(log)-1].Status).To(BeZero(), "the request in flight at the kill was never answered")
	w.g.Expect(counts[strings.TrimPrefix(inFlight, "snowauth-")]).To(Equal(3), "the request lost with the leader is made once more")
	for _, n := range names {
		w.g.Expect(w.ready(n)()).To(Equal(readyTokenValid))
	}
	w.g.Expect(s.summary()).To(BeEmpty())
}

// Stopping the leader gracefully (SIGTERM, as when its Pod is deleted)
// releases the lease: the standby leads within seconds and, the tokens
// being fresh, asks ServiceNow for nothing and rewrites no Secret.
func TestAGracefulHandOverAsksServiceNowForNothingWhileTokensAreFresh(t *testing.T) {
	t.Parallel()
	w := newWorld(t, env, 30*time.Minute)
	names := []string{"orders", "billing", "hr"}
	leading, standby := replicaPair(w)
	w.connect(names...)
	w.waitReady(names...)
	w.g.Expect(w.requestsOf(names)).To(HaveEach(1))
	secretVersions, connVersions := map[string]string{}, map[string]string{}
	for _, n := range names {
		secretVersions[n] = w.tokenSecret(n).ResourceVersion
		connVersions[n] = w.connection(n).ResourceVersion
	}
	s := startSampler(t, w.env.Client, w.sim, time.Now, w.tokenSecretKeys(names)...)

	leading.Terminate()
	stopped := time.Now()
	w.g.Eventually(standby.leads, 15*time.Second, interval).Should(BeTrue(), "the standby takes over within seconds")
	takeover := since(stopped)
	w.g.Eventually(leading.Exited, eventually, interval).Should(BeTrue())
	t.Logf("graceful hand-over: the standby led %s after SIGTERM", takeover)

	// The new leader looked at every connection, and found nothing to do.
	w.g.Eventually(standby.reconciles, eventually, interval).Should(BeNumerically(">=", len(names)))
	w.g.Consistently(func() map[string]int { return w.requestsOf(names) }, 2*time.Second, interval).Should(HaveEach(1))
	for _, n := range names {
		w.g.Expect(w.tokenSecret(n).ResourceVersion).To(Equal(secretVersions[n]), "token Secret of %s untouched", n)
		w.g.Expect(w.connection(n).ResourceVersion).To(Equal(connVersions[n]), "status of %s untouched", n)
		w.g.Expect(w.ready(n)()).To(Equal(readyTokenValid))
	}
	w.g.Expect(s.summary()).To(BeEmpty())
}
