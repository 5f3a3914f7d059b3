package reliability_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// env is the API server the tests share; each takes a namespace of its own.
var env *testenv.Env

func TestMain(m *testing.M) {
	// In-process managers log into their test's buffer; this only quiets
	// the process-wide logger client-go falls back to.
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	// testenv.Run, and removing the manager binary the leader-election
	// tests build.
	e, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	testenv.RemoveManagerBinary()
	os.Exit(code)
}

const (
	clientSecret = "reliability-client-secret"
	appUser      = "svc.snowauth"

	// eventually bounds waits for things that take seconds; interval is
	// how often they are polled.
	eventually = 60 * time.Second
	interval   = 50 * time.Millisecond
)

// world is one test's namespace on an API server and its ServiceNow
// instance.
type world struct {
	t   *testing.T
	g   *WithT
	ctx context.Context
	env *testenv.Env
	ns  string
	sim *simulator.Simulator
}

// newWorld takes a namespace on e and starts a simulator issuing access
// tokens that live lifespan.
func newWorld(t *testing.T, e *testenv.Env, lifespan time.Duration) *world {
	t.Helper()
	sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: lifespan, ClientCredentialsEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	sim.AddUser(simulator.User{Username: appUser, Password: "unused-app-user-password"})
	return &world{t: t, g: NewWithT(t), ctx: context.Background(), env: e, ns: e.Namespace(t), sim: sim}
}

// clientID is the OAuth client of connection name: one per connection, so
// that the simulator counts each connection's token requests apart.
func clientID(name string) string { return "snowauth-" + name }

// connect registers an OAuth client for connection name at the simulator
// and creates its credentials Secret and a ClientCredentials connection.
func (w *world) connect(names ...string) {
	w.t.Helper()
	for _, name := range names {
		w.sim.AddClient(simulator.OAuthClient{ID: clientID(name), Secret: clientSecret, ApplicationUser: appUser})
		w.g.Expect(w.env.Client.Create(w.ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name + "-credentials"},
			StringData: map[string]string{
				snowv1.CredentialsKeyInstance: w.sim.LocalhostURL(), snowv1.CredentialsKeyClientID: clientID(name),
				snowv1.CredentialsKeyClientSecret: clientSecret,
			},
		})).To(Succeed())
		w.g.Expect(w.env.Client.Create(w.ctx, &snowv1.ServiceNowConnection{
			ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
			Spec: snowv1.ServiceNowConnectionSpec{
				GrantType:            snowv1.GrantClientCredentials,
				CredentialsSecretRef: snowv1.SecretReference{Name: name + "-credentials"},
			},
		})).To(Succeed())
	}
}

// tokenSecretKey is connection name's token Secret.
func (w *world) tokenSecretKey(name string) client.ObjectKey {
	return client.ObjectKey{Namespace: w.ns, Name: name + "-token"}
}

func (w *world) tokenSecretKeys(names []string) []client.ObjectKey {
	keys := make([]client.ObjectKey, 0, len(names))
	for _, n := range names {
		keys = append(keys, w.tokenSecretKey(n))
	}
	return keys
}

// connection reads connection name from the API server.
func (w *world) connection(name string) *snowv1.ServiceNowConnection {
	w.t.Helper()
	c := &snowv1.ServiceNowConnection{}
	w.g.Expect(w.env.Client.Get(w.ctx, client.ObjectKey{Namespace: w.ns, Name: name}, c)).To(Succeed())
	return c
}

// tokenSecret reads connection name's token Secret from the API server.
func (w *world) tokenSecret(name string) *corev1.Secret {
	w.t.Helper()
	s := &corev1.Secret{}
	w.g.Expect(w.env.Client.Get(w.ctx, w.tokenSecretKey(name), s)).To(Succeed())
	return s
}

// ready is connection name's Ready condition as "Status/Reason", for
// Eventually.
func (w *world) ready(name string) func() (string, error) {
	return func() (string, error) {
		c := &snowv1.ServiceNowConnection{}
		if err := w.env.Client.Get(w.ctx, client.ObjectKey{Namespace: w.ns, Name: name}, c); err != nil {
			return "", err
		}
		if r := meta.FindStatusCondition(c.Status.Conditions, snowv1.ConditionReady); r != nil {
			return string(r.Status) + "/" + r.Reason, nil
		}
		return "", nil
	}
}

const readyTokenValid = "True/" + snowv1.ReasonTokenValid

// waitReady waits until every connection named is Ready.
func (w *world) waitReady(names ...string) {
	w.t.Helper()
	for _, n := range names {
		w.g.Eventually(w.ready(n), eventually, interval).Should(Equal(readyTokenValid), "connection %s", n)
	}
}

// requests counts the token requests ServiceNow received for connection
// name, whatever their outcome.
func (w *world) requests(name string) int { return w.sim.TokenRequests(clientID(name), "") }

// requestsOf is requests for each connection named.
func (w *world) requestsOf(names []string) map[string]int {
	out := map[string]int{}
	for _, n := range names {
		out[n] = w.requests(n)
	}
	return out
}

// expiresAt is connection name's status.expiresAt (zero when unset).
func (w *world) expiresAt(name string) time.Time {
	w.t.Helper()
	if e := w.connection(name).Status.ExpiresAt; e != nil {
		return e.Time
	}
	return time.Time{}
}

// annotate sets an annotation on connection name, as a person or another
// tool would (a harmless change that wakes the reconciler up).
func (w *world) annotate(name, key, value string) {
	w.t.Helper()
	c := w.connection(name)
	patch := client.MergeFrom(c.DeepCopy())
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[key] = value
	w.g.Expect(w.env.Client.Patch(w.ctx, c, patch)).To(Succeed())
}

// wake makes the reconciler of connection name look at it again without
// changing anything it acts on: someone annotates its token Secret, which
// the reconciler hears of (it owns the Secret) and puts back as it was. An
// edit of the connection's own labels or foreign annotations would not
// reach it: its cache drops them.
func (w *world) wake(name, value string) {
	w.t.Helper()
	s := w.tokenSecret(name)
	patch := client.MergeFrom(s.DeepCopy())
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations["example.com/poked"] = value
	w.g.Expect(w.env.Client.Patch(w.ctx, s, patch)).To(Succeed())
}
