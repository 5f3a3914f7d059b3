package install_test

import (
	"context"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// managerArgs is the manager container's arguments in a rendering.
func managerArgs(t testing.TB, objs []*unstructured.Unstructured) []any {
	t.Helper()
	return managerContainer(t, objs)["args"].([]any)
}

// managerDeployment is the manager's Deployment in a rendering (with the
// authorization server there is a second).
func managerDeployment(t testing.TB, objs []*unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	for _, d := range ofKind(objs, "Deployment") {
		if strings.HasSuffix(d.GetName(), "-controller-manager") {
			return d
		}
	}
	t.Fatal("no manager Deployment")
	return nil
}

// managerContainer is the manager container of the rendered Deployment.
func managerContainer(t testing.TB, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	containers := field(managerDeployment(t, objs), "spec", "template", "spec", "containers").([]any)
	for _, c := range containers {
		if c := c.(map[string]any); c["name"] == "manager" {
			return c
		}
	}
	t.Fatal("no manager container")
	return nil
}

func TestChartRejectsAMistypedValueWithAMessageNamingIt(t *testing.T) {
	for _, tc := range []struct {
		set, message string
	}{
		{"replicaCout=2", "additional properties 'replicaCout' not allowed"},
		{"networkPolicy.enabled=true", "at '/networkPolicy': additional properties 'enabled' not allowed"},
		{"manager.tokenRequestTimeout=30", "at '/manager/tokenRequestTimeout': got number, want string"},
		{"manager.tokenRequestTimeout=30 seconds", "at '/manager/tokenRequestTimeout'"},
		{"image.pullPolicy=always", "at '/image/pullPolicy'"},
		{"watchNamespaces={Team_A}", "at '/watchNamespaces/0'"},
		{"podLabels.team=7", "at '/podLabels/team': got number, want string"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			g := NewWithT(t)
			out, err := helmTemplateOutput(t, "snowauth", "snowauth-system", "--set", tc.set)
			g.Expect(err).To(HaveOccurred(), "helm rendered a mistyped value:\n%s", out)
			g.Expect(string(out)).To(ContainSubstring("values don't meet the specifications of the schema"))
			g.Expect(string(out)).To(ContainSubstring(tc.message))
		})
	}
}

func TestChartRunsTheManagerWithTheFlagsOfItsValues(t *testing.T) {
	t.Run("defaults, as in config/manager", func(t *testing.T) {
		objs := helmTemplate(t, "snowauth", "snowauth-system")
		NewWithT(t).Expect(managerArgs(t, objs)).To(Equal([]any{
			"--leader-elect",
			"--health-probe-bind-address=:8081",
			"--metrics-bind-address=:8443",
			"--allowed-instance-domains=service-now.com,servicenowservices.com",
			"--token-request-timeout=30s",
			"--max-concurrent-reconciles=32",
			"--kube-api-qps=100",
			"--kube-api-burst=200",
			"--zap-log-level=info",
			"--memory-limit=$(MEMORY_LIMIT)",
		}))
	})
	t.Run("every option", func(t *testing.T) {
		g := NewWithT(t)
		objs := helmTemplate(t, "snowauth", "snowauth-system", "--values", allOptionsValues)
		g.Expect(managerArgs(t, objs)).To(Equal([]any{
			"--leader-elect",
			"--health-probe-bind-address=:8081",
			"--metrics-bind-address=:9443",
			"--allowed-instance-domains=service-now.com,servicenow.internal.example.com",
			"--ca-bundle=/etc/snowauth/ca/ca-bundle.pem",
			"--token-request-timeout=45s",
			"--max-concurrent-reconciles=8",
			"--kube-api-qps=25.5",
			"--kube-api-burst=60",
			"--watch-namespaces=team-a,team-b",
			"--authorization-external-url=https://snowauth.example.com",
			"--authorization-key-secret=snowauth-link-key",
			"--authorization-link-ttl=20m",
			"--zap-log-level=debug",
			"--memory-limit=$(MEMORY_LIMIT)",
			"--zap-encoder=console",
		}))
		c := managerContainer(t, objs)
		g.Expect(c["image"]).To(Equal("registry.example.com/snowauth/manager@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"))
		g.Expect(c["env"]).To(ContainElement(HaveKeyWithValue("name", "HTTPS_PROXY")))
		g.Expect(c["env"]).To(ContainElement(And(HaveKeyWithValue("name", "MEMORY_LIMIT"),
			HaveKeyWithValue("valueFrom", HaveKeyWithValue("resourceFieldRef", HaveKeyWithValue("resource", "limits.memory"))))),
			"the Go runtime's soft limit follows the container's")
		g.Expect(c["ports"]).To(ContainElement(And(HaveKeyWithValue("name", "metrics"), HaveKeyWithValue("containerPort", BeEquivalentTo(9443)))))
		pod := field(managerDeployment(t, objs), "spec", "template", "spec").(map[string]any)
		g.Expect(pod).To(HaveKeyWithValue("priorityClassName", "snowauth-ci-critical"))
		g.Expect(pod).To(HaveKeyWithValue("serviceAccountName", "snowauth-ci-operator"))
		g.Expect(pod).To(HaveKey("nodeSelector"))
		g.Expect(pod).To(HaveKey("tolerations"))
		g.Expect(pod).To(HaveKey("affinity"))
		g.Expect(pod).To(HaveKey("topologySpreadConstraints"))
		g.Expect(pod["volumes"]).To(ContainElement(HaveKeyWithValue("configMap", map[string]any{
			"name": "corporate-ca", "items": []any{map[string]any{"key": "bundle.pem", "path": "ca-bundle.pem"}},
		})))
		meta := field(managerDeployment(t, objs), "spec", "template", "metadata").(map[string]any)
		g.Expect(meta["annotations"]).To(HaveKeyWithValue("example.com/owner", "platform-team"))
		g.Expect(meta["labels"]).To(HaveKeyWithValue("example.com/team", "platform"))
	})
}

func TestChartRunsTheAuthorizationServerApartFromTheManagerAtItsExternalURL(t *testing.T) {
	g := NewWithT(t)
	objs := helmTemplate(t, "snowauth", "snowauth-system", "--values", allOptionsValues)
	c := managerContainer(t, objs)
	g.Expect(containerPortNames(t, objs)).NotTo(ContainElement("authorization"), "the manager serves nothing to browsers")
	g.Expect(c["env"]).To(ContainElement(HaveKeyWithValue("name", "POD_NAMESPACE")), "the signing key Secret lives in the Pod's namespace")

	var server *unstructured.Unstructured
	for _, d := range ofKind(objs, "Deployment") {
		if d.GetName() == "snowauth-ci-authorization" {
			server = d
		}
	}
	g.Expect(server).NotTo(BeNil(), "the authorization server has a Deployment of its own")
	pod := field(server, "spec", "template", "spec").(map[string]any)
	g.Expect(pod["serviceAccountName"]).To(Equal("snowauth-ci-authorization"), "and a ServiceAccount of its own")
	container := pod["containers"].([]any)[0].(map[string]any)
	g.Expect(container["command"]).To(Equal([]any{"/authserver"}))
	g.Expect(container["args"]).To(ContainElements("--bind-address=:8083", "--external-url=https://snowauth.example.com",
		"--key-dir=/etc/snowauth/authorization-key"))
	g.Expect(pod["volumes"]).To(ContainElement(HaveKeyWithValue("secret", map[string]any{"secretName": "snowauth-link-key"})),
		"it mounts the link-signing keys, and no other Secret")
	g.Expect(pod["volumes"]).To(HaveLen(1))

	var svc *unstructured.Unstructured
	for _, o := range ofKind(objs, "Service") {
		if o.GetName() == "snowauth-ci-authorization" {
			svc = o
		}
	}
	g.Expect(svc).NotTo(BeNil(), "a Service in front of the authorization server")
	g.Expect(selects(field(svc, "spec", "selector"), field(server, "spec", "template", "metadata", "labels").(map[string]any))).To(BeTrue())
	g.Expect(selects(field(svc, "spec", "selector"), podLabels(t, objs))).To(BeFalse(), "the Service does not reach the manager")
	ing := only(t, objs, "Ingress")
	rule := field(ing, "spec", "rules").([]any)[0].(map[string]any)
	g.Expect(rule["host"]).To(Equal("snowauth.example.com"), "the Ingress serves externalURL's host")
	g.Expect(field(ing, "spec", "ingressClassName")).To(Equal("nginx"))

	off := helmTemplate(t, "snowauth", "snowauth-system")
	g.Expect(ofKind(off, "Ingress")).To(BeEmpty(), "off by default")
	g.Expect(ofKind(off, "Deployment")).To(HaveLen(1))
	g.Expect(managerArgs(t, off)).NotTo(ContainElement(HavePrefix("--authorization")))

	out, err := helmTemplateOutput(t, "snowauth", "snowauth-system", "--set", "authorization.enable=true")
	g.Expect(err).To(HaveOccurred())
	g.Expect(string(out)).To(ContainSubstring("authorization.externalURL is required when authorization.enable is true"))
}

func TestChartReadsTheCABundleFromASecretKey(t *testing.T) {
	g := NewWithT(t)
	objs := helmTemplate(t, "snowauth", "snowauth-system",
		"--set", "manager.caBundle.secret.name=corporate-ca", "--set", "manager.caBundle.secret.key=ca.pem")
	g.Expect(managerArgs(t, objs)).To(ContainElement("--ca-bundle=/etc/snowauth/ca/ca-bundle.pem"))
	g.Expect(field(only(t, objs, "Deployment"), "spec", "template", "spec", "volumes")).To(ContainElement(
		HaveKeyWithValue("secret", map[string]any{
			"secretName": "corporate-ca", "items": []any{map[string]any{"key": "ca.pem", "path": "ca-bundle.pem"}},
		})))
	g.Expect(managerContainer(t, objs)["volumeMounts"]).To(ContainElement(
		And(HaveKeyWithValue("mountPath", "/etc/snowauth/ca"), HaveKeyWithValue("readOnly", true))))

	out, err := helmTemplateOutput(t, "snowauth", "snowauth-system",
		"--set", "manager.caBundle.secret.name=a", "--set", "manager.caBundle.configMap.name=b")
	g.Expect(err).To(HaveOccurred())
	g.Expect(string(out)).To(ContainSubstring("manager.caBundle: set configMap.name or secret.name, not both"))
}

func TestChartElectsALeaderAndKeepsAPodThroughDrainsWithMoreReplicas(t *testing.T) {
	g := NewWithT(t)
	objs := helmTemplate(t, "snowauth", "snowauth-system", "--set", "replicaCount=2")
	g.Expect(managerArgs(t, objs)).To(ContainElement("--leader-elect"))
	g.Expect(field(only(t, objs, "PodDisruptionBudget"), "spec", "minAvailable")).To(BeEquivalentTo(1))
	g.Expect(ofKind(objs, "Role")).To(ContainElement(WithTransform(
		(*unstructured.Unstructured).GetName, Equal("snowauth-leader-election-role"))))

	out, err := helmTemplateOutput(t, "snowauth", "snowauth-system", "--set", "replicaCount=2", "--set", "leaderElection.enable=false")
	g.Expect(err).To(HaveOccurred(), "two managers without leader election would both refresh every token")
	g.Expect(string(out)).To(ContainSubstring("leaderElection.enable=false needs replicaCount: 1"))

	// One replica: a budget would block every node drain, and without
	// leader election the manager needs no Lease.
	objs = helmTemplate(t, "snowauth", "snowauth-system", "--set", "leaderElection.enable=false")
	g.Expect(managerArgs(t, objs)).NotTo(ContainElement("--leader-elect"))
	g.Expect(ofKind(objs, "PodDisruptionBudget")).To(BeEmpty())
	g.Expect(ofKind(objs, "Role")).To(BeEmpty())
}

func TestChartCanLeaveOutOrKeepTheCRD(t *testing.T) {
	g := NewWithT(t)
	crd := only(t, helmTemplate(t, "snowauth", "snowauth-system"), "CustomResourceDefinition")
	g.Expect(crd.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"),
		"uninstalling must not delete the CRD, and with it every connection and token Secret, unless asked to")

	crd = only(t, helmTemplate(t, "snowauth", "snowauth-system", "--set", "crd.keep=false"), "CustomResourceDefinition")
	g.Expect(crd.GetAnnotations()).NotTo(HaveKey("helm.sh/resource-policy"))

	g.Expect(ofKind(helmTemplate(t, "snowauth", "snowauth-system", "--set", "crd.enable=false"), "CustomResourceDefinition")).To(BeEmpty())
}

func TestChartCRDIsTheGeneratedCRD(t *testing.T) {
	g := NewWithT(t)
	rendered := only(t, helmTemplate(t, "snowauth", "snowauth-system"), "CustomResourceDefinition")
	generated := only(t, readManifests(t, "config/crd/bases/servicenow.snowauth.dev_servicenowconnections.yaml"), "CustomResourceDefinition")
	g.Expect(rendered.GetName()).To(Equal(generated.GetName()))
	expectSame(t, rendered.Object["spec"], generated.Object["spec"],
		"the chart's CRD is not config/crd/bases' (run `make manifests`)")
}

func TestChartAlertsAreTheRulesPromtoolTests(t *testing.T) {
	g := NewWithT(t)
	rendered := only(t, helmTemplate(t, "snowauth", "snowauth-system", "--set", "prometheus.rule.enable=true"), "PrometheusRule")
	// config/prometheus/snowauth.rules.yaml is a rule file: its top level is
	// a PrometheusRule's spec.
	tested := readManifests(t, "config/prometheus/snowauth.rules.yaml")
	g.Expect(tested).To(HaveLen(1))
	expectSame(t, rendered.Object["spec"], tested[0].Object,
		"the chart's alert rules are not config/prometheus/snowauth.rules.yaml (run `make manifests`)")
	g.Expect(rendered.Object["spec"]).To(HaveKey("groups"))

	// The annotations keep Prometheus' templates for Prometheus.
	g.Expect(field(rendered, "spec", "groups")).To(ContainElement(HaveKeyWithValue("rules",
		ContainElement(HaveKeyWithValue("annotations", HaveKeyWithValue("summary", ContainSubstring("{{ $labels.namespace }}")))))))
}

// test/alerts proves config/prometheus/monitor.yaml's endpoint right on a
// real Prometheus; the chart's must scrape the same way.
func TestChartServiceMonitorScrapesLikeTheTestedOne(t *testing.T) {
	rendered := only(t, helmTemplate(t, "snowauth", "snowauth-system",
		"--set", "metrics.enable=true", "--set", "prometheus.serviceMonitor.enable=true"), "ServiceMonitor")
	tested := only(t, readManifests(t, "config/prometheus/monitor.yaml"), "ServiceMonitor")
	expectSame(t, field(rendered, "spec", "endpoints"), field(tested, "spec", "endpoints"),
		"the chart's ServiceMonitor endpoint differs from config/prometheus/monitor.yaml's")
	NewWithT(t).Expect(field(tested, "spec", "endpoints")).To(ConsistOf(HaveKeyWithValue("honorLabels", true)))
}

func TestChartManagerRulesAreTheGeneratedRBAC(t *testing.T) {
	g := NewWithT(t)
	generated := only(t, readManifests(t, "config/rbac/role.yaml"), "ClusterRole").Object["rules"]
	g.Expect(generated).NotTo(BeEmpty())

	clusterWide := helmTemplate(t, "snowauth", "snowauth-system")
	var managerRole *unstructured.Unstructured
	for _, r := range ofKind(clusterWide, "ClusterRole") {
		if r.GetName() == "snowauth-manager-role" {
			managerRole = r
		}
	}
	g.Expect(managerRole).NotTo(BeNil())
	expectSame(t, managerRole.Object["rules"], generated,
		"the chart's manager rules are not config/rbac/role.yaml's (run `make manifests`)")

	scoped := helmTemplate(t, "snowauth", "snowauth-system", "--set", "watchNamespaces={team-a,team-b}")
	var namespaces []string
	for _, r := range ofKind(scoped, "Role") {
		if r.GetName() == "snowauth-manager-role" {
			namespaces = append(namespaces, r.GetNamespace())
			expectSame(t, r.Object["rules"], generated, "the namespace-scoped manager rules are not config/rbac/role.yaml's")
		}
	}
	g.Expect(namespaces).To(ConsistOf("team-a", "team-b"))
	for _, r := range ofKind(scoped, "ClusterRole") {
		g.Expect(r.GetName()).NotTo(Equal("snowauth-manager-role"), "a namespace-scoped install has no cluster-wide manager role")
		g.Expect(r.Object["rules"]).NotTo(ContainElement(HaveKeyWithValue("resources", ContainElement("secrets"))),
			"%s must not grant Secrets cluster-wide", r.GetName())
	}
	g.Expect(managerArgs(t, scoped)).To(ContainElement("--watch-namespaces=team-a,team-b"))
}

// podLabels is the manager Pod's labels in a rendering.
func podLabels(t testing.TB, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	return field(managerDeployment(t, objs), "spec", "template", "metadata", "labels").(map[string]any)
}

// containerPortNames are the manager container's port names.
func containerPortNames(t testing.TB, objs []*unstructured.Unstructured) []any {
	t.Helper()
	var names []any
	for _, p := range managerContainer(t, objs)["ports"].([]any) {
		names = append(names, p.(map[string]any)["name"])
	}
	return names
}

// selects says a matchLabels-style selector matches labels.
func selects(selector any, labels map[string]any) bool {
	m, ok := selector.(map[string]any)
	if !ok || len(m) == 0 {
		return false
	}
	for k, v := range m {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// The API server accepts a Service, budget or policy that selects nothing;
// only the user would notice, when scrapes fail or a drain evicts the
// leader. These check each selector finds the manager.
func TestChartSelectorsFindTheManager(t *testing.T) {
	g := NewWithT(t)
	objs := helmTemplate(t, "snowauth", "snowauth-system", "--values", allOptionsValues)
	pod := podLabels(t, objs)
	g.Expect(selects(field(managerDeployment(t, objs), "spec", "selector", "matchLabels"), pod)).To(BeTrue(), "Deployment")
	services := ofKind(objs, "Service")
	g.Expect(services).To(HaveLen(2), "the metrics and the authorization Services")
	var svc *unstructured.Unstructured
	for _, s := range services {
		if s.GetName() == "snowauth-ci-controller-manager-metrics-service" {
			svc = s
		}
	}
	g.Expect(svc).NotTo(BeNil())
	g.Expect(selects(field(svc, "spec", "selector"), pod)).To(BeTrue(), "Service %s", svc.GetName())
	g.Expect(containerPortNames(t, objs)).To(ContainElement(field(svc, "spec", "ports").([]any)[0].(map[string]any)["targetPort"]), "Service %s", svc.GetName())
	g.Expect(selects(field(only(t, objs, "PodDisruptionBudget"), "spec", "selector", "matchLabels"), pod)).To(BeTrue(), "PodDisruptionBudget")
	var np *unstructured.Unstructured
	for _, p := range ofKind(objs, "NetworkPolicy") {
		if strings.HasSuffix(p.GetName(), "-controller-manager") {
			np = p
		}
	}
	g.Expect(selects(field(np, "spec", "podSelector", "matchLabels"), pod)).To(BeTrue(), "NetworkPolicy")
	for _, rule := range field(np, "spec", "ingress").([]any) {
		for _, p := range rule.(map[string]any)["ports"].([]any) {
			g.Expect(containerPortNames(t, objs)).To(ContainElement(p.(map[string]any)["port"]), "NetworkPolicy ingress port")
		}
	}
	sm := only(t, objs, "ServiceMonitor")
	svcLabels := map[string]any{}
	for k, v := range svc.GetLabels() {
		svcLabels[k] = v
	}
	g.Expect(selects(field(sm, "spec", "selector", "matchLabels"), svcLabels)).To(BeTrue(), "ServiceMonitor")
	for _, other := range services {
		if other != svc {
			labels := map[string]any{}
			for k, v := range other.GetLabels() {
				labels[k] = v
			}
			g.Expect(selects(field(sm, "spec", "selector", "matchLabels"), labels)).To(BeFalse(), "the ServiceMonitor scrapes only the metrics Service")
		}
	}
	g.Expect(field(sm, "spec", "endpoints").([]any)[0]).To(HaveKeyWithValue("port", field(svc, "spec", "ports").([]any)[0].(map[string]any)["name"]))
}

func TestInstallYAMLAndConfigNetworkPolicySelectTheManager(t *testing.T) {
	g := NewWithT(t)
	objs := readManifests(t, "dist/install.yaml")
	pod := podLabels(t, objs)
	g.Expect(selects(field(only(t, objs, "Service"), "spec", "selector"), pod)).To(BeTrue(), "metrics Service")
	np := only(t, kustomizeBuild(t, "config/network-policy"), "NetworkPolicy")
	g.Expect(selects(field(np, "spec", "podSelector", "matchLabels"), pod)).To(BeTrue(), "config/network-policy")
	for _, rule := range field(np, "spec", "ingress").([]any) {
		for _, p := range rule.(map[string]any)["ports"].([]any) {
			g.Expect(containerPortNames(t, objs)).To(ContainElement(p.(map[string]any)["port"]), "NetworkPolicy ingress port")
		}
	}
}

// Shards are releases of the chart, each with its --connection-selector
// and its own Lease: the second leaves out the CRD, and no cluster-wide
// object of one has the name of the other's, so both install side by side.
func TestTwoChartReleasesInstallSideBySideAsShards(t *testing.T) {
	g, ctx := NewWithT(t), context.Background()
	nsA, nsB := env.Namespace(t), env.Namespace(t)
	shard := func(release, ns, selector string, extra ...string) []*unstructured.Unstructured {
		return helmTemplate(t, release, ns, append([]string{
			"--set", "manager.extraArgs[0]=--connection-selector=" + selector,
			"--set", "manager.extraArgs[1]=--leader-election-id=" + release + ".servicenow.snowauth.dev",
		}, extra...)...)
	}
	a := shard("shard-a", nsA, "snowauth.dev/shard=a", "--set", "crd.enable=false")
	b := shard("shard-rest", nsB, "snowauth.dev/shard!=a", "--set", "crd.enable=false")
	g.Expect(managerArgs(t, a)).To(ContainElements("--connection-selector=snowauth.dev/shard=a", "--leader-election-id=shard-a.servicenow.snowauth.dev"))

	clusterWide := func(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
		var out []*unstructured.Unstructured
		for _, o := range objs {
			if o.GetNamespace() == "" {
				out = append(out, o)
			}
		}
		return out
	}
	names := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.GetKind()+"/"+o.GetName())
		}
		return out
	}
	for _, n := range names(clusterWide(b)) {
		g.Expect(names(clusterWide(a))).NotTo(ContainElement(n), "no cluster-wide name in common")
	}
	g.Expect(names(clusterWide(a))).To(ContainElement(HavePrefix("ValidatingAdmissionPolicy/")), "the policies are among them")
	objs := append(clusterWide(a), clusterWide(b)...)
	deleteAfterTest(t, objs)
	g.Expect(apply(ctx, env.Client, objs)).To(Succeed(), "the two releases' cluster-wide objects (RBAC, admission policies) do not collide")
}
