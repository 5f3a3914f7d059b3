package reliability_test

import (
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// The manager's clock two minutes ahead of or behind ServiceNow's (and the
// applications'): the refresh still lands before the token really expires,
// and when ServiceNow stops issuing tokens, Ready turns False no later than
// the real expiry with the clock ahead (two minutes early), and at most the
// skew after it with the clock behind.
//
// Only the reconciler's clock is skewed (testenv.Manager.Now); the
// ServiceNow client computes expiries from ServiceNow's clock, as a replica
// taking over status written by a replica with a correct clock would read
// them. Time is compressed: the test moves ServiceNow's clock (the
// simulator's, which the reconciler's follows, skewed) to a few seconds
// before each moment that matters and lets the manager's own timers do the
// rest. Ready is computed from the reconciler's clock and nothing else, so
// with the clock behind it cannot turn False before that clock reaches the
// expiry: the skew is the best it can do, and what is asserted.
func TestTokensStayValidAndReadyTurnsFalseOnTimeWithTheManagersClockSkewed(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		skew time.Duration
	}{
		{"TwoMinutesAhead", 2 * time.Minute},
		{"TwoMinutesBehind", -2 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testClockSkew(t, c.skew)
		})
	}
}

func testClockSkew(t *testing.T, skew time.Duration) {
	// Ten-minute tokens. With the clock two minutes behind, the reconciler
	// believes a token lives 12 minutes and plans its refresh 8 of them
	// in (less up to a tenth as jitter): 8 real minutes after ServiceNow
	// issued it, 2 before it expires. (A lifespan under twice the skew
	// would expire first: 2/3·L + 2/3·skew real time.) With the clock
	// ahead, 8 believed minutes, refreshed 5⅓ minutes in.
	w := newWorld(t, env, 10*time.Minute)
	tokens, err := servicenow.NewClient(servicenow.Options{
		AllowedDomains: []string{"localhost"}, CABundle: w.sim.CACertPEM(), Timeout: 5 * time.Second, Now: w.sim.Now,
	})
	w.g.Expect(err).NotTo(HaveOccurred())
	logs := &testenv.SyncBuffer{}
	env.StartManager(t, testenv.Manager{
		Namespaces: []string{w.ns},
		Tokens:     tokens,
		Logs:       logs,
		Now:        func() time.Time { return w.sim.Now().Add(skew) },
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager logs:\n%s", logs)
		}
	})
	const name = "orders"
	w.connect(name)
	w.waitReady(name)
	w.g.Expect(w.requests(name)).To(Equal(1))
	s := startSampler(t, w.env.Client, w.sim, w.sim.Now, w.tokenSecretKey(name))

	// jumpTo moves ServiceNow's clock to at and wakes the reconciler up,
	// so that it plans from the new time: its timers run on the wall
	// clock.
	pokes := 0
	jumpTo := func(at time.Time) {
		w.sim.Advance(at.Sub(w.sim.Now()))
		pokes++
		w.wake(name, strconv.Itoa(pokes))
	}

	// The refresh: planned in the reconciler's clock, it must come before
	// the real expiry.
	conn := w.connection(name)
	expiry, planned := conn.Status.ExpiresAt.Time, conn.Status.NextRefreshTime.Add(-skew)
	t.Logf("clock %+v: token expires at %s; refresh planned for %s real time, %s before the expiry",
		skew, expiry.Format(time.TimeOnly), planned.Format(time.TimeOnly), expiry.Sub(planned))
	w.g.Expect(planned).To(BeTemporally("<", expiry))
	jumpTo(planned.Add(-3 * time.Second))
	w.g.Eventually(func() time.Time { return w.expiresAt(name) }, 30*time.Second, interval).Should(BeTemporally(">", expiry))
	refreshedAt := w.sim.Now()
	w.g.Expect(refreshedAt).To(BeTemporally("<", expiry), "the refresh landed before the real expiry")
	w.g.Consistently(func() int { return w.requests(name) }, time.Second, interval).Should(Equal(2))
	w.g.Expect(w.ready(name)()).To(Equal(readyTokenValid))

	// ServiceNow stops issuing tokens. The reconciler's clock reaches the
	// token's expiry skew before the real one (skew after it, behind).
	w.sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Path: "/oauth_token.do", Status: 503})
	s.serviceNowDown.Store(true)
	token := string(w.tokenSecret(name).Data["access_token"])
	real, ok := w.sim.TokenExpiry(token)
	w.g.Expect(ok).To(BeTrue())
	flips := w.expiresAt(name).Add(-skew) // real time at which the reconciler's clock says expired
	jumpTo(flips.Add(-5 * time.Second))
	w.g.Expect(w.ready(name)()).To(Equal(readyTokenValid), "5 s before the reconciler's clock reaches the expiry")
	var flippedAt time.Time
	w.g.Eventually(func() (string, error) {
		r, err := w.ready(name)()
		flippedAt = w.sim.Now()
		return r, err
	}, 30*time.Second, interval).Should(Equal("False/TokenExpired"))
	late := flippedAt.Sub(real)
	t.Logf("clock %+v: Ready turned False %s after the real expiry (negative: before it); %d failed token requests meanwhile",
		skew, late.Round(10*time.Millisecond), w.requests(name)-2)
	if skew > 0 {
		w.g.Expect(late).To(BeNumerically("<=", 0), "Ready never claims a token past its real expiry")
	} else {
		w.g.Expect(late).To(BeNumerically("<=", -skew+2*time.Second), "Ready claims a token past its real expiry for at most the skew")
	}
	w.g.Expect(late).To(BeNumerically(">=", min(-skew, 0)-3*time.Second), "Ready turns False no earlier than the skew before the real expiry")
	w.g.Expect(s.summary()).To(BeEmpty())
}
