package plugin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/plugin"
	"github.com/snowauth/snowauth/internal/version"
)

// printedList is a List as kubectl get -o json|yaml prints it.
type printedList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []snowv1.ServiceNowConnection `json:"items"`
}

// stored reads a connection as the API server has it, without the
// managedFields that -o json|yaml leave out unless asked.
func stored(g *WithT, ns, name string) snowv1.ServiceNowConnection {
	var c snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &c)).To(Succeed())
	c.ManagedFields = nil
	c.SetGroupVersionKind(snowv1.GroupVersion.WithKind("ServiceNowConnection"))
	return c
}

func labelled(labels map[string]string) func(*snowv1.ServiceNowConnection) {
	return func(c *snowv1.ServiceNowConnection) { c.Labels = labels }
}

func TestStatusAndListPrintTheObjectsAsKubectlGetDoesWithOutputJSONOrYAML(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	orders := createConnection(g, ns, "orders", labelled(map[string]string{"team": "payments"}))
	setStatus(g, orders, readyStatus("orders-token"))
	createConnection(g, ns, "crm")
	kc := kubeconfig(t, ns)

	// One name: the object itself, as kubectl get snc orders -o json.
	one := kubectlServicenow(kc, t0, "status", "orders", "-o", "json")
	g.Expect(one.err).NotTo(HaveOccurred())
	var got snowv1.ServiceNowConnection
	g.Expect(json.Unmarshal([]byte(one.stdout), &got)).To(Succeed())
	g.Expect(got).To(Equal(stored(g, ns, "orders")))
	g.Expect(got.Status.Conditions).NotTo(BeEmpty(), "status is printed too")

	// Several names: a List, in the order asked.
	two := kubectlServicenow(kc, t0, "status", "orders", "crm", "-o", "yaml")
	g.Expect(two.err).NotTo(HaveOccurred())
	var list printedList
	g.Expect(yaml.UnmarshalStrict([]byte(two.stdout), &list)).To(Succeed())
	g.Expect(list.TypeMeta).To(Equal(metav1.TypeMeta{APIVersion: "v1", Kind: "List"}))
	g.Expect(list.Items).To(Equal([]snowv1.ServiceNowConnection{stored(g, ns, "orders"), stored(g, ns, "crm")}))

	// list: a List, sorted by name; --show-managed-fields keeps them.
	listed := kubectlServicenow(kc, t0, "list", "-o", "json", "--show-managed-fields")
	g.Expect(listed.err).NotTo(HaveOccurred())
	list = printedList{}
	g.Expect(json.Unmarshal([]byte(listed.stdout), &list)).To(Succeed())
	g.Expect(list.Kind).To(Equal("List"))
	g.Expect(list.Items).To(HaveLen(2))
	g.Expect(list.Items[0].Name).To(Equal("crm"))
	g.Expect(list.Items[1].ManagedFields).NotTo(BeEmpty())

	// An empty List rather than a message, so a script can always parse it.
	empty := kubectlServicenow(kubeconfig(t, env.Namespace(t)), t0, "list", "-o", "json")
	g.Expect(empty.err).NotTo(HaveOccurred())
	g.Expect(empty.stderr).To(BeEmpty())
	g.Expect(empty.stdout).To(MatchJSON(`{"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}`))
}

func TestSelectorPicksTheConnectionsListAndStatusShow(t *testing.T) {
	g := NewWithT(t)
	ns, other := env.Namespace(t), env.Namespace(t)
	team := map[string]string{"team": "payments-" + ns}
	setStatus(g, createConnection(g, ns, "orders", labelled(team)), readyStatus("orders-token"))
	createConnection(g, ns, "crm")
	createConnection(g, other, "billing", labelled(team))
	kc := kubeconfig(t, ns)
	selector := "team=payments-" + ns

	listed := kubectlServicenow(kc, t0, "list", "-l", selector)
	g.Expect(listed.err).NotTo(HaveOccurred())
	g.Expect(listed.stdout).To(ContainSubstring("orders"))
	g.Expect(listed.stdout).NotTo(Or(ContainSubstring("crm"), ContainSubstring("billing")))

	everywhere := kubectlServicenow(kc, t0, "list", "-l", selector, "-A", "-o", "wide")
	g.Expect(everywhere.err).NotTo(HaveOccurred())
	g.Expect(everywhere.stdout).To(MatchRegexp(`^NAMESPACE\s+NAME\s+STATE\s+EXPIRES\s+FAILING\s+GRANT\s+INSTANCE\s+SECRET\s+NEXT REFRESH\s+MESSAGE\n`))
	g.Expect(everywhere.stdout).To(MatchRegexp(`(?m)^%s\s+orders\s+TokenValid\s+in 24m\s+<none>\s+ClientCredentials\s+https://acme.service-now.com\s+orders-token\s+in 14m\s+Secret orders-token holds`, ns))
	g.Expect(everywhere.stdout).To(MatchRegexp(`(?m)^%s\s+billing\s`, other))
	g.Expect(everywhere.stdout).NotTo(ContainSubstring("crm"))

	status := kubectlServicenow(kc, t0, "status", "-l", selector)
	g.Expect(status.err).NotTo(HaveOccurred())
	g.Expect(status.stdout).To(HavePrefix("Connection:    " + ns + "/orders\n"))
	g.Expect(status.stdout).NotTo(ContainSubstring("Connection:    " + ns + "/crm"))

	none := kubectlServicenow(kc, t0, "status", "-l", "team=nobody")
	g.Expect(none.err).NotTo(HaveOccurred())
	g.Expect(none.stderr).To(Equal(fmt.Sprintf("No ServiceNowConnections found in namespace %q.\n", ns)))
}

func TestStatusOfSeveralNamesShowsEachAndFailsForTheMissingOne(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")
	createConnection(g, ns, "crm")

	r := kubectlServicenow(kubeconfig(t, ns), t0, "status", "orders", "missing", "crm")

	g.Expect(r.code).To(Equal(plugin.ExitFailure))
	g.Expect(r.err).To(MatchError(fmt.Sprintf(`ServiceNowConnection "missing" not found in namespace %q`, ns)))
	g.Expect(r.stdout).To(MatchRegexp(`^Connection:\s+%[1]s/orders\n(.+\n)+\nConnection:\s+%[1]s/crm\n`, ns))
}

// refreshed names the connections of namespaces that carry a refresh
// request, so a test shows exactly which ones a command selected.
func refreshed(g *WithT, namespaces ...string) []string {
	var names []string
	for _, ns := range namespaces {
		var list snowv1.ServiceNowConnectionList
		g.Expect(env.Client.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
		for _, c := range list.Items {
			if c.Annotations[snowv1.AnnotationRefreshRequestedAt] != "" {
				names = append(names, c.Namespace+"/"+c.Name)
			}
		}
	}
	return names
}

func TestRefreshAllRequestsARefreshOfEveryConnectionOfTheNamespaceOnly(t *testing.T) {
	g := NewWithT(t)
	ns, other := env.Namespace(t), env.Namespace(t)
	createConnection(g, ns, "orders")
	createConnection(g, ns, "crm")
	createConnection(g, ns, "paused", func(c *snowv1.ServiceNowConnection) { c.Spec.Suspend = true })
	createConnection(g, other, "billing")

	r := kubectlServicenow(kubeconfig(t, ns), t0, "refresh", "--all")

	g.Expect(refreshed(g, ns, other)).To(ConsistOf(ns+"/orders", ns+"/crm"))
	value := t0.Format(time.RFC3339Nano)
	g.Expect(r.stdout).To(Equal(fmt.Sprintf(
		"Requested a refresh of %[1]s/crm (%[2]s=%[3]s).\nRequested a refresh of %[1]s/orders (%[2]s=%[3]s).\n",
		ns, snowv1.AnnotationRefreshRequestedAt, value)), "one line per connection")
	// The suspended one is refused, as by name, and the others go ahead.
	g.Expect(r.code).To(Equal(plugin.ExitFailure))
	g.Expect(r.err).To(MatchError(ContainSubstring(ns + "/paused is suspended")))
}

func TestRefreshBySelectorAcrossNamespacesRequestsExactlyTheSelected(t *testing.T) {
	g := NewWithT(t)
	ns, other := env.Namespace(t), env.Namespace(t)
	team := map[string]string{"team": "payments-" + ns}
	createConnection(g, ns, "orders", labelled(team))
	createConnection(g, ns, "crm")
	createConnection(g, other, "billing", labelled(team))
	createConnection(g, other, "hr")
	selector := "team=payments-" + ns

	inNamespace := kubectlServicenow(kubeconfig(t, ns), t0, "refresh", "-l", selector)
	g.Expect(inNamespace.err).NotTo(HaveOccurred())
	g.Expect(refreshed(g, ns, other)).To(ConsistOf(ns + "/orders"))

	everywhere := kubectlServicenow(kubeconfig(t, ns), t0, "refresh", "-l", selector, "-A")
	g.Expect(everywhere.err).NotTo(HaveOccurred())
	g.Expect(refreshed(g, ns, other)).To(ConsistOf(ns+"/orders", other+"/billing"))
	g.Expect(strings.Count(everywhere.stdout, "\n")).To(Equal(2))
}

func TestRefreshWaitExitsNotReadyWhenAConnectionCannotBecomeReadyInTime(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")
	createConnection(g, ns, "crm")

	// No operator runs: neither request is ever handled.
	started := time.Now()
	r := kubectlServicenow(kubeconfig(t, ns), time.Time{}, "refresh", "--all", "--wait", "--timeout", "2s")

	g.Expect(r.code).To(Equal(plugin.ExitNotReady))
	g.Expect(r.err).To(MatchError(SatisfyAll(
		HavePrefix("2 of 2 connections failed:\n"),
		ContainSubstring("timed out after 2s: snowauth has not acted on refresh request"),
		ContainSubstring(ns+"/crm;"), ContainSubstring(ns+"/orders;"),
	)))
	g.Expect(time.Since(started)).To(BeNumerically("<", 30*time.Second), "both waited at once, within the one timeout")
	g.Expect(refreshed(g, ns)).To(ConsistOf(ns+"/orders", ns+"/crm"))
}

func TestVersionPrintsThePluginsVersionWithoutACluster(t *testing.T) {
	g := NewWithT(t)
	v := version.Get()

	// No kubeconfig is read: it does not exist.
	r := kubectlServicenow("/nonexistent/kubeconfig", t0, "version")
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(Equal(fmt.Sprintf("Client Version: %s\nRevision: %s\nGo Version: %s\nPlatform: %s/%s\n",
		v.Version, v.Revision, runtime.Version(), runtime.GOOS, runtime.GOARCH)))

	asJSON := kubectlServicenow("/nonexistent/kubeconfig", t0, "version", "-o", "json", "--client")
	g.Expect(asJSON.err).NotTo(HaveOccurred())
	var info plugin.VersionInfo
	g.Expect(json.Unmarshal([]byte(asJSON.stdout), &info)).To(Succeed())
	g.Expect(info.ClientVersion.Version).To(Equal(v.Version))
	g.Expect(info.ClientVersion.GoVersion).To(Equal(runtime.Version()))

	asYAML := kubectlServicenow("/nonexistent/kubeconfig", t0, "version", "-o", "yaml")
	g.Expect(asYAML.err).NotTo(HaveOccurred())
	g.Expect(asYAML.stdout).To(ContainSubstring("version: " + v.Version + "\n"))
}

func TestCompletionBashPrintsAScriptForThePlugin(t *testing.T) {
	g := NewWithT(t)

	r := kubectlServicenow("/nonexistent/kubeconfig", t0, "completion", "bash")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(HavePrefix("# bash completion V2 for kubectl-servicenow"))
	g.Expect(r.stdout).To(ContainSubstring("-F __start_kubectl-servicenow kubectl-servicenow"))

	for _, shell := range []string{"zsh", "fish", "powershell"} {
		g.Expect(kubectlServicenow("/nonexistent/kubeconfig", t0, "completion", shell).stdout).To(ContainSubstring("kubectl-servicenow"), shell)
	}
	g.Expect(kubectlServicenow("/nonexistent/kubeconfig", t0, "completion", "tcsh").code).To(Equal(plugin.ExitUsage))
}

func TestCompletionOffersTheNamespacesConnections(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")
	createConnection(g, ns, "crm")

	// What kubectl_complete-servicenow runs when a user presses Tab.
	r := kubectlServicenow(kubeconfig(t, ns), t0, "__complete", "status", "orders", "")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(Equal("crm\n:4\n"), "names not given yet, and no file names")
}

func TestUsageMistakesExit2(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")
	kc := kubeconfig(t, ns)

	for _, args := range [][]string{
		{"status", "orders", "--bogus"},
		{"status"},
		{"authorize"},
		{"jwt-certificate"},
		{"jwt-certificate", "orders", "crm"},
		{"status", "orders", "-o", "xml"},
		{"list", "-o", "table"},
		{"list", "orders"},
		{"status", "orders", "-l", "team=payments"},
		{"status", "orders", "-A"},
		{"list", "-l", "team in (payments"},
		{"refresh"},
		{"refresh", "-A"},
		{"refresh", "orders", "--all"},
		{"refresh", "--all", "-l", "team=payments"},
		{"refresh", "orders", "--wait", "--timeout", "0s"},
		{"refresh", "orders", "--timeout", "soon"},
		{"revoke"},
		{"revoke", "orders", "crm"},
		{"revoke", "orders", "--wait", "--timeout", "0s"},
		{"revoke", "-l", "team=payments"},
		{"stauts", "orders"},
	} {
		r := kubectlServicenow(kc, t0, args...)
		g.Expect(r.code).To(Equal(plugin.ExitUsage), "%q: %v", args, r.err)
		g.Expect(r.stderr).To(MatchRegexp(`(?s)^Error: .+\nSee 'kubectl servicenow[a-z -]* --help' for help and examples\n$`), "%q", args)
	}
	g.Expect(annotation(g, ns, "orders")).To(BeEmpty(), "nothing was done")
}

func TestStatusPrintsAMessageWithoutItsTerminalEscapeSequences(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	// A hostile or garbled message: colour, a title change, a screen clear,
	// a carriage return that would overwrite the line, a C1 CSI.
	const hostile = "ServiceNow said \x1b[31mno\x1b[0m\x1b]0;owned\a\x1b[2J\r\u009b2K, twice"
	conn := createConnection(g, ns, "orders", func(c *snowv1.ServiceNowConnection) {
		c.Annotations = map[string]string{snowv1.AnnotationRefreshRequestedAt: "\x1b[8mhidden\x1b[0m"}
	})
	st := readyStatus("orders-token")
	st.Conditions = append(st.Conditions, metav1.Condition{
		Type: snowv1.ConditionRefreshFailed, Status: metav1.ConditionTrue, Reason: "AuthenticationFailed",
		Message: hostile, LastTransitionTime: *at(-time.Minute),
	})
	setStatus(g, conn, st)
	createEvents(g, event(conn, corev1.EventTypeWarning, "AuthenticationFailed", hostile, -time.Minute))

	for _, args := range [][]string{{"status", "orders"}, {"status", "orders", "-o", "wide"}, {"list", "-o", "wide"}} {
		r := kubectlServicenow(kubeconfig(t, ns), t0, args...)
		g.Expect(r.err).NotTo(HaveOccurred())
		g.Expect(r.stdout).To(ContainSubstring("ServiceNow said no, twice"), "%q", args)
		g.Expect(r.stdout).NotTo(ContainSubstring("\x1b"), "%q", args)
		g.Expect(r.stdout).NotTo(MatchRegexp("[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f]"), "%q", args)
	}
	status := kubectlServicenow(kubeconfig(t, ns), t0, "status", "orders")
	g.Expect(status.stdout).To(MatchRegexp(`Refresh request:\s+hidden \(pending`))

	// JSON keeps the message as it is, escaped by the encoder.
	asJSON := kubectlServicenow(kubeconfig(t, ns), t0, "status", "orders", "-o", "json")
	g.Expect(asJSON.stdout).To(ContainSubstring(`\u001b[31m`))
	var got snowv1.ServiceNowConnection
	g.Expect(json.Unmarshal([]byte(asJSON.stdout), &got)).To(Succeed())
	g.Expect(got.Status.Conditions[1].Message).To(Equal(hostile))
	// YAML too, though YAML cannot hold the C1 CSI unescaped.
	for _, format := range []string{"yaml", "kyaml"} {
		asYAML := kubectlServicenow(kubeconfig(t, ns), t0, "status", "orders", "-o", format)
		g.Expect(asYAML.err).NotTo(HaveOccurred(), format)
		got = snowv1.ServiceNowConnection{}
		g.Expect(yaml.Unmarshal([]byte(asYAML.stdout), &got)).To(Succeed(), format)
		g.Expect(got.Status.Conditions[1].Message).To(Equal(hostile), format)
		g.Expect(got.ManagedFields).To(BeEmpty(), format)
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"leaves plain text alone", "token valid until 2030-01-02T10:24:00Z", "token valid until 2030-01-02T10:24:00Z"},
		{"keeps newlines, tabs and other scripts", "a\tb\nжß→✓", "a\tb\nжß→✓"},
		{"removes colour sequences", "\x1b[1;31mred\x1b[0m", "red"},
		{"removes a title change ended by BEL", "\x1b]0;title\aafter", "after"},
		{"removes a hyperlink ended by ST", "\x1b]8;;https://evil\x1b\\click\x1b]8;;\x1b\\", "click"},
		{"removes a device control string", "\x1bPq#0;2;0;0;0\x1b\\x", "x"},
		{"removes two-byte and charset sequences", "\x1bc\x1b(Bx\x1b7", "x"},
		{"removes an unterminated control string to the end", "ok\x1b]0;never ends", "ok"},
		{"removes a lone ESC at the end", "ok\x1b", "ok"},
		{"removes C0 controls and DEL", "a\rb\x00c\bd\x07e\x7f", "abcde"},
		{"removes C1 controls and the sequences they introduce", "a\u009b31mb\u009d0;t\u009cc\u0085d", "abcd"},
		{"replaces bytes that are not UTF-8", "a\x9b31mb\xff", "a\uFFFD31mb\uFFFD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(plugin.Printable(tc.in)).To(Equal(tc.want))
		})
	}
}
