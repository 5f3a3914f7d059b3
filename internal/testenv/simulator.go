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
	c, err := servicenow.NewClient(servicenow.Options{
		AllowedDomains: []string{"localhost"},
		CABundle:       sim.CACertPEM(),
		Timeout:        timeout,
	})
	if err != nil {
		t.Fatalf("configuring the ServiceNow client: %v", err)
	}
	return c
}
