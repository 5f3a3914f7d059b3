package controllers_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// served lists the connections a manager's metrics report: those in its
// cache, which are the ones it serves.
func served(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		if f.GetName() != "snowauth_connection_info" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" {
					names = append(names, l.GetValue())
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// Two managers with complementary --connection-selector values share one
// API server: each connection is served by exactly one of them (one token
// request each), and relabelling a connection hands it to the other shard,
// which finds the token in place and asks ServiceNow for at most one more.
func TestTwoShardsServeEachConnectionOnceAndARelabelMovesItWithAtMostOneExtraTokenRequest(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withoutManager())
	g := h.g
	regs := map[string]*prometheus.Registry{}
	for shard, selector := range map[string]string{"a": "snowauth.dev/shard=a", "rest": "snowauth.dev/shard!=a"} {
		sel, err := labels.Parse(selector)
		g.Expect(err).NotTo(HaveOccurred())
		regs[shard] = prometheus.NewRegistry()
		env.StartManager(t, testenv.Manager{
			Namespaces: []string{h.ns}, ConnectionSelector: sel, Metrics: regs[shard],
			Tokens: testenv.ClientFor(t, h.sim, time.Second),
		})
	}
	h.credentials("creds", h.clientCredentials())
	var inA, inRest []string
	for i := range 6 {
		name, shard := fmt.Sprintf("orders-%d", i), "b"
		if i%2 == 0 {
			name, shard = fmt.Sprintf("orders-%d", i), "a"
			inA = append(inA, name)
		} else {
			inRest = append(inRest, name)
		}
		h.connection(name, "creds", snowv1.GrantClientCredentials, func(c *snowv1.ServiceNowConnection) {
			c.Labels = map[string]string{"snowauth.dev/shard": shard}
		})
	}
	for i := range 6 {
		g.Eventually(h.readyStatus(fmt.Sprintf("orders-%d", i)), soon, interval).Should(Equal("True/TokenValid"))
	}
	requests := h.tokenRequests(simulator.GrantClientCredentials)
	g.Expect(requests()).To(Equal(6), "one token request per connection: no connection is served twice")
	g.Eventually(func() []string { return served(t, regs["a"]) }, soon, interval).Should(Equal(inA))
	g.Eventually(func() []string { return served(t, regs["rest"]) }, soon, interval).Should(Equal(inRest))

	// orders-1 moves to shard a.
	c := h.get("orders-1")
	patch := client.MergeFrom(c.DeepCopy())
	c.Labels["snowauth.dev/shard"] = "a"
	g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
	g.Eventually(func() []string { return served(t, regs["a"]) }, soon, interval).Should(ContainElement("orders-1"))
	g.Eventually(func() []string { return served(t, regs["rest"]) }, soon, interval).ShouldNot(ContainElement("orders-1"))
	h.requestRefresh("orders-1", "after the move")
	g.Eventually(func() string { return h.get("orders-1").Status.LastHandledRefreshRequest }, soon, interval).Should(Equal("after the move"),
		"the new shard serves it")
	g.Expect(requests()).To(BeNumerically("<=", 8), "the requested refresh, and at most one more for the hand-over")
	g.Expect(h.readyStatus("orders-1")()).To(Equal("True/TokenValid"))
}
