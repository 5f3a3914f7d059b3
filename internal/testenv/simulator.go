package testenv

import (
	"testing"
	"time"

	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// ClientFor returns a ServiceNow client configured as the manager is for a
// simulated instance: it trusts sim's CA (as --ca-bundle does), allows
// localhost (sim.LocalhostURL) and gives up on a request after timeout.
func ClientFor(t testing.TB, sim *simulator.Simulator, timeout time.Duration) *servicenow.Client {
	t.Helper()
	return ClientWithClock(t, sim, timeout, nil)
}

// ClientWithClock is ClientFor with a clock of the caller's (nil: the wall
// clock), which dates JWT assertions and token expiries.
func ClientWithClock(t testing.TB, sim *simulator.Simulator, timeout time.Duration, now func() time.Time) *servicenow.Client {
	t.Helper()
	c, err := servicenow.NewClient(servicenow.Options{
		AllowedDomains: []string{"localhost"},
		CABundle:       sim.CACertPEM(),
		Timeout:        timeout,
		Now:            now,
	})
	if err != nil {
		t.Fatalf("configuring the ServiceNow client: %v", err)
	}
	return c
}
