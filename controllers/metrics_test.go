package controllers_test

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/controllers"
	"github.com/snowauth/snowauth/internal/testenv"
	"github.com/snowauth/snowauth/internal/version"
)

// scrape gathers what the manager exposes on /metrics: controller-runtime's
// registry (with snowauth's counters) plus the per-connection collector the
// wiring registered into the harness's own registry (every test has its own
// manager).
func (h *harness) scrape() map[string][]*dto.Metric {
	return gather(h.g, ctrlmetrics.Registry.(prometheus.Gatherer), h.metrics)
}

func gather(g Gomega, gatherers ...prometheus.Gatherer) map[string][]*dto.Metric {
	out := map[string][]*dto.Metric{}
	for _, gatherer := range gatherers {
		families, err := gatherer.Gather()
		g.Expect(err).NotTo(HaveOccurred())
		for _, f := range families {
			out[f.GetName()] = append(out[f.GetName()], f.GetMetric()...)
		}
	}
	return out
}

// value returns the value of the series of metric name whose labels include
// want, and whether there is one.
func value(metrics map[string][]*dto.Metric, name string, want map[string]string) (float64, bool) {
	for _, m := range metrics[name] {
		match := true
		for k, v := range want {
			if labelValue(m, k) != v {
				match = false
			}
		}
		if match {
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

// series is the value of a series that must exist.
func (h *harness) series(metrics map[string][]*dto.Metric, name string, want map[string]string) float64 {
	h.t.Helper()
	v, ok := value(metrics, name, want)
	h.g.Expect(ok).To(BeTrue(), "no series %s%v", name, want)
	return v
}

func TestMetricsDescribeAReadyAndAFailingConnection(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("good", h.clientCredentials())
	bad := h.clientCredentials()
	bad["client_secret"] = "CANARY-wrong"
	h.credentials("bad", bad)
	h.connection("healthy", "good", snowv1.GrantClientCredentials)
	h.connection("rejected", "bad", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("healthy"), soon, interval).Should(Equal("True/TokenValid"))
	g.Eventually(h.readyStatus("rejected"), soon, interval).Should(Equal("False/AuthenticationFailed"))
	healthy := map[string]string{"namespace": h.ns, "name": "healthy"}
	rejected := map[string]string{"namespace": h.ns, "name": "rejected"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	// The cache feeds the collector: wait until it has the final status.
	g.Eventually(func() bool {
		_, ok := value(h.scrape(), "snowauth_connection_token_expiry_timestamp_seconds", healthy)
		return ok
	}, soon, interval).Should(BeTrue())
	m := h.scrape()

	expiry, _ := value(m, "snowauth_connection_token_expiry_timestamp_seconds", healthy)
	g.Expect(expiry).To(Equal(float64(h.get("healthy").Status.ExpiresAt.Unix())))
	last, ok := value(m, "snowauth_connection_last_refresh_timestamp_seconds", healthy)
	g.Expect(ok).To(BeTrue())
	g.Expect(last).To(BeNumerically("~", float64(time.Now().Unix()), 30))
	g.Expect(h.series(m, "snowauth_connection_ready", with(healthy, "status", "True", "reason", "TokenValid"))).To(Equal(1.0))
	g.Expect(h.series(m, "snowauth_connection_ready", with(healthy, "status", "False"))).To(Equal(0.0))
	g.Expect(h.series(m, "snowauth_connection_refresh_failed", healthy)).To(Equal(0.0))
	g.Expect(h.series(m, "snowauth_connection_consecutive_failures", healthy)).To(Equal(0.0))
	g.Expect(h.series(m, "snowauth_connection_info", with(healthy, "grant", "ClientCredentials", "token_secret", "healthy-token"))).To(Equal(1.0))

	g.Expect(h.series(m, "snowauth_connection_ready", with(rejected, "status", "False", "reason", "AuthenticationFailed"))).To(Equal(1.0))
	g.Expect(h.series(m, "snowauth_connection_refresh_failed", with(rejected, "reason", "AuthenticationFailed"))).To(Equal(1.0))
	g.Expect(h.series(m, "snowauth_connection_consecutive_failures", rejected)).To(Equal(1.0))
	_, hasExpiry := value(m, "snowauth_connection_token_expiry_timestamp_seconds", rejected)
	g.Expect(hasExpiry).To(BeFalse(), "a connection that never had a token has no expiry series")

	failures, _ := value(m, "snowauth_token_requests_total", map[string]string{"grant": "client_credentials", "result": "failure", "reason": "AuthenticationFailed"})
	g.Expect(failures).To(BeNumerically(">=", 1))
	successes, _ := value(m, "snowauth_token_requests_total", map[string]string{"grant": "client_credentials", "result": "success"})
	g.Expect(successes).To(BeNumerically(">=", 1))

	// A deleted connection leaves no series behind.
	g.Expect(env.Client.Delete(h.ctx, h.get("rejected"))).To(Succeed())
	g.Eventually(func() bool {
		_, ok := value(h.scrape(), "snowauth_connection_consecutive_failures", rejected)
		return ok
	}, soon, interval).Should(BeFalse())

	// No label value anywhere holds secret material.
	for name, series := range h.scrape() {
		for _, s := range series {
			for _, l := range s.GetLabel() {
				g.Expect(l.GetValue()).NotTo(ContainSubstring("CANARY"), "metric %s", name)
				g.Expect(l.GetValue()).NotTo(Equal(h.accessToken("healthy-token")()), "metric %s", name)
			}
		}
	}
}

func TestStandbyExportsNoConnectionSeriesOnlyThatItIsNotTheLeader(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	build := version.Get()

	// A standby has the same cache; until it is elected it exports none of it.
	standby := prometheus.NewPedanticRegistry()
	g.Expect(standby.Register(&controllers.ConnectionCollector{Reader: h.mgr.GetCache(), Elected: make(chan struct{}), Build: build})).To(Succeed())
	m := gather(g, standby)
	g.Expect(slices.Sorted(maps.Keys(m))).To(Equal([]string{"snowauth_build_info", "snowauth_leader"}))
	g.Expect(h.series(m, "snowauth_leader", nil)).To(Equal(0.0))

	// The leader (this harness's manager, which runs no election) exports
	// them, and says it leads.
	g.Eventually(func() bool {
		_, ok := value(h.scrape(), "snowauth_connection_ready", map[string]string{"name": "orders"})
		return ok
	}, soon, interval).Should(BeTrue())
	m = h.scrape()
	g.Expect(h.series(m, "snowauth_leader", nil)).To(Equal(1.0))
	g.Expect(h.series(m, "snowauth_build_info", map[string]string{
		"version": build.Version, "revision": build.Revision, "goversion": runtime.Version(),
	})).To(Equal(1.0))
}

// TestAlertsAndDashboardUseOnlyExposedMetrics guards against a rename that
// would silently break alerting: every metric name in the shipped rules and
// dashboard must be one the manager exposes with a live connection.
func TestAlertsAndDashboardUseOnlyExposedMetrics(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withAuthorization())
	g := h.g
	h.credentials("creds", h.clientCredentials())
	// A client secret with a maximum age, for the horizon metric.
	h.connection("orders", "creds", snowv1.GrantClientCredentials, func(c *snowv1.ServiceNowConnection) {
		c.Spec.ClientSecretMaxAge = &metav1.Duration{Duration: 90 * 24 * time.Hour}
	})
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	// An AuthorizationCode connection waiting for a person, for the
	// re-authorisation metric.
	h.authCodeConnection()
	g.Eventually(func() bool {
		m := h.scrape()
		_, expiry := value(m, "snowauth_connection_token_expiry_timestamp_seconds", map[string]string{"name": "orders"})
		_, reauth := value(m, "snowauth_connection_reauthorization_required", map[string]string{"name": "catalog"})
		_, horizon := value(m, "snowauth_credential_expiry_timestamp_seconds", map[string]string{"name": "orders", "kind": "ClientSecret"})
		return expiry && reauth && horizon
	}, soon, interval).Should(BeTrue())
	exposed := slices.Collect(maps.Keys(h.scrape()))

	names := regexp.MustCompile(`\b(snowauth_[a-z_]+|controller_runtime_[a-z_]+)\b`)
	for _, file := range []string{
		filepath.Join("config", "prometheus", "snowauth.rules.yaml"),
		filepath.Join("config", "grafana", "snowauth-dashboard.json"),
	} {
		text, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), file))
		g.Expect(err).NotTo(HaveOccurred())
		used := names.FindAllString(string(text), -1)
		g.Expect(used).NotTo(BeEmpty(), "%s names no metric", file)
		for _, name := range used {
			family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			g.Expect(exposed).To(ContainElement(family), "%s uses %s, which the manager does not expose", file, name)
		}
	}
}
