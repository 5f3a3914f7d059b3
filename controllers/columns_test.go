package controllers_test

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// kubectlGet is `kubectl get snc` in the harness's namespace, printed by
// kubectl's own table printer from the API server's Table.
func (h *harness) kubectlGet(wide bool) string {
	h.t.Helper()
	out, err := testenv.KubectlGet(h.ctx, env.Config, h.ns, wide)
	h.g.Expect(err).NotTo(HaveOccurred())
	return out
}

// row returns the cells of the row of connection name.
func row(table, name string) []string {
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return f
		}
	}
	return nil
}

func TestKubectlGetShowsTheExpiryAndAFailingRefreshWhileTheTokenIsValid(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	expires := h.get("orders").Status.ExpiresAt.UTC().Format(time.RFC3339)

	table := h.kubectlGet(false)
	g.Expect(strings.Fields(strings.Split(table, "\n")[0])).To(Equal([]string{"NAME", "READY", "STATUS", "EXPIRES", "AGE"}))
	g.Expect(table).NotTo(ContainSubstring("<invalid>"))
	g.Expect(row(table, "orders")[:4]).To(Equal([]string{"orders", "True", "TokenValid", expires}))

	// A refresh fails while the token still works: READY stays True and
	// STATUS says what is failing.
	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503, Path: "/oauth_token.do"})
	h.requestRefresh("orders", "columns")
	g.Eventually(func() []string { return row(h.kubectlGet(false), "orders")[:3] }, soon, interval).
		Should(Equal([]string{"orders", "True", "InstanceUnavailable"}))

	wide := h.kubectlGet(true)
	g.Expect(strings.Fields(strings.Split(wide, "\n")[0])).To(Equal([]string{
		"NAME", "READY", "STATUS", "EXPIRES", "AGE", "GRANT", "INSTANCE", "SECRET", "NEXT", "REFRESH", "MESSAGE"}))
	cells := row(wide, "orders")
	g.Expect(cells[5:8]).To(Equal([]string{"ClientCredentials", h.instanceURL(), "orders-token"}))
	next, err := time.Parse(time.RFC3339, cells[8])
	g.Expect(err).NotTo(HaveOccurred(), "NEXT REFRESH is a time a person reads: %q", cells[8])
	g.Expect(next).To(BeTemporally(">", time.Now().Add(-time.Minute)))
	g.Expect(strings.Join(cells[9:], " ")).To(ContainSubstring("503"), "the message says why the refresh fails")
}
