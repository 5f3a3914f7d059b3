package alerts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Run(m, &env) }

const (
	clientID     = "snowauth-alerts-test"
	clientSecret = "alerts-test-client-secret"
	appUser      = "svc.snowauth"

	eventually = 90 * time.Second
	interval   = 500 * time.Millisecond
)

func TestCredentialsAlertNamesTheBrokenConnectionsNamespaceBehindTheOperatorsRelabelling(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: 30 * time.Minute, ClientCredentialsEnabled: true})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(sim.Close)
	sim.AddUser(simulator.User{Username: appUser, Password: "unused"})
	sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser})

	// The manager runs in its own namespace, two replicas electing a
	// leader; same-named connections live in two team namespaces, one of
	// them with credentials ServiceNow rejects.
	release, teamA, teamB := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	broken := map[string]string{"instance": sim.LocalhostURL(), "client_id": clientID, "client_secret": "wrong-secret"}
	good := map[string]string{"instance": sim.LocalhostURL(), "client_id": clientID, "client_secret": clientSecret}
	for ns, data := range map[string]map[string]string{teamA: broken, teamB: good} {
		g.Expect(env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, StringData: data})).To(Succeed())
		g.Expect(env.Client.Create(ctx, &snowv1.ServiceNowConnection{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders"},
			Spec:       snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantClientCredentials, CredentialsSecretRef: snowv1.SecretReference{Name: "creds"}},
		})).To(Succeed())
	}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	g.Expect(os.WriteFile(caFile, sim.CACertPEM(), 0o600)).To(Succeed())
	var replicas []target
	for i := range 2 {
		replicas = append(replicas, startManager(t, release, fmt.Sprintf("snowauth-controller-manager-%d", i), caFile))
	}
	prom := startPrometheus(t, release, replicas, shortenedRules(t, 5*time.Second))

	// The alert fires for team-a's connection, and only for it: the
	// namespace is the connection's, not the manager's, and two replicas
	// make one alert.
	g.Eventually(func() []alert { return prom.alerts(t, "SnowauthCredentialsRejected") }, eventually, interval).Should(ConsistOf(
		alert{State: "firing", Labels: map[string]string{
			"alertname": "SnowauthCredentialsRejected", "severity": "warning",
			"namespace": teamA, "name": "orders", "reason": "AuthenticationFailed",
		}},
	))
	g.Expect(prom.query(t, "count(snowauth_connection_info)")).To(Equal(2.0), "each connection once, not once per replica")
	g.Expect(prom.query(t, "count(snowauth_leader)")).To(Equal(2.0), "both replicas are scraped")
	g.Expect(prom.query(t, "sum(snowauth_leader)")).To(Equal(1.0), "one of them leads")
	g.Expect(prom.query(t, `count(snowauth_connection_ready{namespace="`+release+`"})`)).To(Equal(0.0),
		"no connection series carries the manager's namespace")
	g.Expect(prom.query(t, `count(snowauth_build_info{pod=~"snowauth-controller-manager-.*", endpoint="https"})`)).To(Equal(2.0),
		"the Operator's target labels are on the series that have no such labels of their own")

	// The dashboard's queries run, and count each connection once.
	for _, expr := range dashboardQueries(t) {
		g.Expect(prom.vector(t, expr)).NotTo(BeNil(), "dashboard query %s", expr)
	}
	states := 0.0
	for _, v := range prom.vector(t, dashboardQueries(t)[0]) {
		states += v
	}
	g.Expect(states).To(Equal(2.0), "the state panel counts two connections, whatever the replicas")

	// Fixed credentials: the alert resolves.
	var creds corev1.Secret
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: teamA, Name: "creds"}, &creds)).To(Succeed())
	creds.StringData = map[string]string{"client_secret": clientSecret}
	g.Expect(env.Client.Update(ctx, &creds)).To(Succeed())
	g.Eventually(func() []alert { return prom.alerts(t, "SnowauthCredentialsRejected") }, eventually, interval).Should(BeEmpty())
}

// A refresh token whose end the credentials Secret states, 10 days ahead:
// the manager's horizon metric, scraped by a real Prometheus, fires the
// shipped alert weeks before the connection would fail, while it is Ready.
func TestCredentialExpiringAlertFiresWeeksBeforeARefreshTokenEnds(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: 30 * time.Minute})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(sim.Close)
	sim.AddUser(simulator.User{Username: appUser, Password: "unused"})
	sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret})
	rt, err := sim.IssueRefreshToken(clientID, appUser)
	g.Expect(err).NotTo(HaveOccurred())

	release, team := env.Namespace(t), env.Namespace(t)
	end := time.Now().Add(10 * 24 * time.Hour).UTC().Format(time.RFC3339)
	g.Expect(env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "creds"}, StringData: map[string]string{
		"instance": sim.LocalhostURL(), "client_id": clientID, "client_secret": clientSecret,
		"refresh_token": rt, "refresh_token_expires_at": end,
	}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "orders"},
		Spec:       snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantRefreshToken, CredentialsSecretRef: snowv1.SecretReference{Name: "creds"}},
	})).To(Succeed())

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	g.Expect(os.WriteFile(caFile, sim.CACertPEM(), 0o600)).To(Succeed())
	prom := startPrometheus(t, release, []target{startManager(t, release, "snowauth-controller-manager-0", caFile)}, shortenedRules(t, 5*time.Second))

	g.Eventually(func() []alert { return prom.alerts(t, "SnowauthCredentialExpiring") }, eventually, interval).Should(ConsistOf(
		alert{State: "firing", Labels: map[string]string{
			"alertname": "SnowauthCredentialExpiring", "severity": "warning",
			"namespace": team, "name": "orders", "kind": "RefreshToken",
		}},
	))
	g.Expect(prom.query(t, `max(snowauth_connection_ready{namespace="`+team+`", status="True"})`)).To(Equal(1.0), "the connection works meanwhile")
	g.Expect(prom.alerts(t, "SnowauthConnectionNotReady")).To(BeEmpty())
}

// target is one manager replica as the Prometheus Operator's service
// discovery would find it behind the metrics Service.
type target struct {
	pod, address string
}

// startManager runs the manager as replica pod with leader election in
// namespace release, until the test ends.
func startManager(t *testing.T, release, pod, caFile string) target {
	t.Helper()
	p := env.StartManagerProcess(t, pod,
		"--allowed-instance-domains=localhost",
		"--ca-bundle="+caFile,
		"--leader-elect", "--leader-election-namespace="+release,
	)
	return target{pod: pod, address: p.MetricsAddr}
}

// serviceMonitorEndpoint is the part of config/prometheus/monitor.yaml the
// scrape configuration depends on.
type serviceMonitorEndpoint struct {
	Port        string `json:"port"`
	Path        string `json:"path"`
	HonorLabels bool   `json:"honorLabels"`
}

func shippedServiceMonitor(t *testing.T) serviceMonitorEndpoint {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "prometheus", "monitor.yaml"))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	var sm struct {
		Spec struct {
			Endpoints []serviceMonitorEndpoint `json:"endpoints"`
		} `json:"spec"`
	}
	NewWithT(t).Expect(yaml.Unmarshal(b, &sm)).To(Succeed())
	NewWithT(t).Expect(sm.Spec.Endpoints).To(HaveLen(1))
	return sm.Spec.Endpoints[0]
}

// scrapeConfig is the job the Prometheus Operator generates for the
// ServiceMonitor's endpoint (its relabelling as in the Operator's golden
// files, without sharding), with static targets standing in for
// Kubernetes service discovery: each carries the __meta_kubernetes_*
// labels discovery would give it, and the relabelling turns them into the
// namespace, service, pod, container, job and endpoint target labels.
func scrapeConfig(t *testing.T, release string, replicas []target) map[string]any {
	ep := shippedServiceMonitor(t)
	var static []map[string]any
	for _, r := range replicas {
		static = append(static, map[string]any{
			"targets": []string{r.address},
			"labels": map[string]string{
				"__meta_kubernetes_namespace":                    release,
				"__meta_kubernetes_service_name":                 "snowauth-controller-manager-metrics-service",
				"__meta_kubernetes_endpoint_port_name":           ep.Port,
				"__meta_kubernetes_endpoint_address_target_kind": "Pod",
				"__meta_kubernetes_endpoint_address_target_name": r.pod,
				"__meta_kubernetes_pod_name":                     r.pod,
				"__meta_kubernetes_pod_container_name":           "manager",
				"__meta_kubernetes_pod_phase":                    "Running",
			},
		})
	}
	relabel := func(source []string, target, regex, replacement string) map[string]any {
		r := map[string]any{"target_label": target}
		if source != nil {
			r["source_labels"] = source
		}
		if regex != "" {
			r["regex"], r["separator"] = regex, ";"
		}
		if replacement != "" {
			r["replacement"] = replacement
		}
		return r
	}
	kindAndName := []string{"__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name"}
	return map[string]any{
		"job_name":        "serviceMonitor/" + release + "/snowauth-controller-manager-metrics-monitor/0",
		"honor_labels":    ep.HonorLabels,
		"metrics_path":    ep.Path,
		"scrape_interval": "1s",
		"static_configs":  static,
		"relabel_configs": []map[string]any{
			relabel([]string{"job"}, "__tmp_prometheus_job_name", "", ""),
			{"action": "keep", "source_labels": []string{"__meta_kubernetes_endpoint_port_name"}, "regex": ep.Port},
			relabel(kindAndName, "node", "Node;(.*)", "${1}"),
			relabel(kindAndName, "pod", "Pod;(.*)", "${1}"),
			relabel([]string{"__meta_kubernetes_namespace"}, "namespace", "", ""),
			relabel([]string{"__meta_kubernetes_service_name"}, "service", "", ""),
			relabel([]string{"__meta_kubernetes_pod_name"}, "pod", "", ""),
			relabel([]string{"__meta_kubernetes_pod_container_name"}, "container", "", ""),
			{"action": "drop", "source_labels": []string{"__meta_kubernetes_pod_phase"}, "regex": "(Failed|Succeeded)"},
			relabel([]string{"__meta_kubernetes_service_name"}, "job", "", "${1}"),
			relabel(nil, "endpoint", "", ep.Port),
		},
	}
}

// shortenedRules writes the shipped rule file with every `for:` set to
// hold, so alerts fire within seconds; nothing else changes.
func shortenedRules(t *testing.T, hold time.Duration) string {
	t.Helper()
	g := NewWithT(t)
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "prometheus", "snowauth.rules.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var rules map[string]any
	g.Expect(yaml.Unmarshal(b, &rules)).To(Succeed())
	for _, group := range rules["groups"].([]any) {
		grp := group.(map[string]any)
		grp["interval"] = "1s"
		for _, r := range grp["rules"].([]any) {
			if rule := r.(map[string]any); rule["for"] != nil {
				rule["for"] = hold.String()
			}
		}
	}
	out, err := yaml.Marshal(rules)
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "snowauth.rules.yaml")
	g.Expect(os.WriteFile(path, out, 0o600)).To(Succeed())
	return path
}

// prometheus is a running Prometheus server.
type prometheus struct{ url string }

func startPrometheus(t *testing.T, release string, replicas []target, rules string) *prometheus {
	t.Helper()
	g := NewWithT(t)
	bin := os.Getenv("PROMETHEUS")
	g.Expect(bin).NotTo(BeEmpty(), "PROMETHEUS is not set: run the tests with `make test`, which builds the Prometheus server into bin/")
	dir := t.TempDir()
	config, err := yaml.Marshal(map[string]any{
		"global":         map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"rule_files":     []string{rules},
		"scrape_configs": []any{scrapeConfig(t, release, replicas)},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(filepath.Join(dir, "prometheus.yml"), config, 0o600)).To(Succeed())
	port := testenv.FreePort(t)
	cmd := exec.CommandContext(context.Background(), bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
	)
	logs, err := os.Create(filepath.Join(dir, "prometheus.log"))
	g.Expect(err).NotTo(HaveOccurred())
	cmd.Stdout, cmd.Stderr = logs, logs
	g.Expect(cmd.Start()).To(Succeed())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		_ = logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("prometheus configuration:\n%s\nprometheus logs:\n%s", config, b)
		}
	})
	p := &prometheus{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	g.Eventually(func() (int, error) {
		resp, err := http.Get(p.url + "/-/ready") //nolint:noctx // a probe
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}, eventually, interval).Should(Equal(http.StatusOK))
	return p
}

// alert is an alert as Prometheus' /api/v1/alerts reports it.
type alert struct {
	State  string            `json:"state"`
	Labels map[string]string `json:"labels"`
}

// alerts lists the pending and firing alerts named name.
func (p *prometheus) alerts(t *testing.T, name string) []alert {
	var body struct {
		Data struct {
			Alerts []alert `json:"alerts"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/alerts", &body)
	var out []alert
	for _, a := range body.Data.Alerts {
		if a.Labels["alertname"] == name {
			out = append(out, a)
		}
	}
	return out
}

// dashboardQueries are the shipped dashboard's queries, in panel order,
// with every connection selected.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "grafana", "snowauth-dashboard.json"))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	NewWithT(t).Expect(json.Unmarshal(b, &d)).To(Succeed())
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, strings.NewReplacer("$namespace", ".*", "$connection", ".*").Replace(tg.Expr))
		}
	}
	return out
}

// vector evaluates an instant query and returns its values (an empty,
// non-nil slice when nothing matches).
func (p *prometheus) vector(t *testing.T, expr string) []float64 {
	var body struct {
		Data struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/query?query="+url.QueryEscape(expr), &body)
	out := []float64{}
	for _, r := range body.Data.Result {
		v, err := strconv.ParseFloat(r.Value[1].(string), 64)
		NewWithT(t).Expect(err).NotTo(HaveOccurred())
		out = append(out, v)
	}
	return out
}

// query evaluates an instant query whose result is one number (0 when the
// result is empty).
func (p *prometheus) query(t *testing.T, expr string) float64 {
	var body struct {
		Data struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/query?query="+url.QueryEscape(expr), &body)
	if len(body.Data.Result) == 0 {
		return 0
	}
	NewWithT(t).Expect(body.Data.Result).To(HaveLen(1), "query %s", expr)
	v, err := strconv.ParseFloat(body.Data.Result[0].Value[1].(string), 64)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return v
}

func (p *prometheus) get(t *testing.T, path string, into any) {
	t.Helper()
	resp, err := http.Get(p.url + path) //nolint:noctx // a local test server
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	NewWithT(t).Expect(resp.StatusCode).To(Equal(http.StatusOK), "GET %s", path)
	NewWithT(t).Expect(json.NewDecoder(resp.Body).Decode(into)).To(Succeed())
}
