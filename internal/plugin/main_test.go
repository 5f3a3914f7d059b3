package plugin_test

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/plugin"
	"github.com/snowauth/snowauth/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	// The managers of the end-to-end tests log into io.Discard; this only
	// quiets the process-wide logger client-go falls back to.
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	testenv.Run(m, &env)
}

// t0 is the fixed "now" of the tests that do not run an operator, so that
// relative times ("in 24m") are exact.
var t0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

// kubeconfig writes a kubeconfig for the envtest API server, as a cluster
// administrator, whose current context's namespace is namespace. The
// plugin reads it through --kubeconfig like any user's.
func kubeconfig(t *testing.T, namespace string) string {
	t.Helper()
	cfg := env.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
	}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: namespace}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// result is what one invocation of the plugin printed and returned, and
// the exit code cmd/kubectl-servicenow exits with for it.
type result struct {
	stdout, stderr string
	err            error
	code           int
}

// kubectlServicenow runs the plugin's cobra command with args as a user
// types them after `kubectl servicenow`, against kubeconfig. now fixes the
// clock; the zero time means the wall clock.
func kubectlServicenow(kubeconfig string, now time.Time, args ...string) result {
	var out, errOut bytes.Buffer
	opts := plugin.Options{IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}}
	if !now.IsZero() {
		opts.Now = func() time.Time { return now }
	}
	cmd := plugin.NewCommand(opts)
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfig}, args...))
	err := cmd.ExecuteContext(context.Background())
	return result{stdout: out.String(), stderr: errOut.String(), err: err, code: plugin.ExitCode(err)}
}

// createConnection creates a client-credentials connection named name.
func createConnection(g *WithT, ns, name string, mutate ...func(*snowv1.ServiceNowConnection)) *snowv1.ServiceNowConnection {
	c := &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       snowv1.ServiceNowConnectionSpec{CredentialsSecretRef: snowv1.SecretReference{Name: name + "-credentials"}},
	}
	for _, m := range mutate {
		m(c)
	}
	g.Expect(env.Client.Create(context.Background(), c)).To(Succeed())
	return c
}

// setStatus writes status through the status subresource, as the
// operator does.
func setStatus(g *WithT, c *snowv1.ServiceNowConnection, st snowv1.ServiceNowConnectionStatus) {
	c.Status = st
	g.Expect(env.Client.Status().Update(context.Background(), c)).To(Succeed())
}

// readyStatus is the status of a connection whose 30-minute token was
// obtained 6 minutes before t0.
func readyStatus(secret string) snowv1.ServiceNowConnectionStatus {
	return snowv1.ServiceNowConnectionStatus{
		ObservedGeneration: 1,
		InstanceURL:        "https://acme.service-now.com",
		TokenSecretName:    secret,
		ExpiresAt:          at(24 * time.Minute),
		LastRefreshTime:    at(-6 * time.Minute),
		NextRefreshTime:    at(14 * time.Minute),
		Conditions: []metav1.Condition{{
			Type: snowv1.ConditionReady, Status: metav1.ConditionTrue, Reason: snowv1.ReasonTokenValid,
			Message:            "Secret " + secret + " holds a token valid until 2030-01-02T10:24:00Z",
			LastTransitionTime: *at(-6 * time.Minute), ObservedGeneration: 1,
		}},
	}
}

// at is t0 + d.
func at(d time.Duration) *metav1.Time {
	return &metav1.Time{Time: t0.Add(d)}
}

// event is an events.k8s.io/v1 Event about c, as snowauth's recorder
// writes them, seen first at t0+first.
func event(c *snowv1.ServiceNowConnection, typ, reason, note string, first time.Duration) *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: c.Namespace, GenerateName: c.Name + "-"},
		EventTime:           metav1.NewMicroTime(t0.Add(first)),
		ReportingController: "snowauth",
		ReportingInstance:   "snowauth-manager-0",
		Action:              "RequestToken",
		Reason:              reason,
		Type:                typ,
		Note:                note,
		Regarding: corev1.ObjectReference{
			APIVersion: snowv1.GroupVersion.String(), Kind: "ServiceNowConnection",
			Namespace: c.Namespace, Name: c.Name, UID: c.UID,
		},
	}
}

// createEvents creates events in the API server.
func createEvents(g *WithT, events ...*eventsv1.Event) {
	for _, e := range events {
		g.Expect(env.Client.Create(context.Background(), e)).To(Succeed())
	}
}

// annotation reads the refresh annotation of a connection.
func annotation(g Gomega, ns, name string) string {
	var c snowv1.ServiceNowConnection
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &c)).To(Succeed())
	return c.Annotations[snowv1.AnnotationRefreshRequestedAt]
}

// allow lets user (impersonated with --as) use verbs on connections in ns,
// and nothing else.
func allow(g *WithT, ns, user string, verbs ...string) {
	ctx := context.Background()
	name := user + "-connections"
	g.Expect(env.Client.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{snowv1.GroupVersion.Group}, Resources: []string{"servicenowconnections"}, Verbs: verbs,
		}},
	})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	})).To(Succeed())
}
