package controllers_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/controllers"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	// Each manager logs into its test's buffer; this only quiets the
	// process-wide logger that client-go's reflectors fall back to.
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	testenv.Run(m, &env)
}

// The OAuth client, user and canary values every test registers with its
// simulator. The canaries are distinctive so a leak is easy to find.
const (
	clientID     = "snowauth-test-client"
	clientSecret = "CANARY-client-secret-7f3a9c"
	appUser      = "svc.snowauth"
	username     = "integration.user"
	password     = "CANARY-password-51be02"
)

// harness is one test's world: its own namespace, ServiceNow simulator and
// manager (whose cache sees only that namespace), so tests cannot disturb
// each other.
type harness struct {
	t      *testing.T
	g      *WithT
	ctx    context.Context
	ns     string
	sim    *simulator.Simulator
	logs   *testenv.SyncBuffer
	writes *atomic.Int64
	mgr    ctrl.Manager
	stop   func()
	// metrics holds what the manager's wiring registered (the
	// per-connection collector).
	metrics *prometheus.Registry
	// The AuthorizationCode grant (withAuthorization): the manager's side,
	// the authorization server and its hand-over namespace, the key that
	// signs links, and a person's browser (with its cookies).
	authz     *controllers.Authorization
	links     *authserver.Links
	signer    *authserver.Signer
	auth      *httptest.Server
	authSrv   *authserver.Server
	handovers string
	jar       http.CookieJar
	// now is the reconciler's clock (withClock); nil: the wall clock.
	// clientNow is the ServiceNow client's (withClientClock).
	now, clientNow func() time.Time
	// jwksTrust is what the simulator trusts when it fetches a JWKS.
	jwksTrust *x509.CertPool
	// noManager: the test starts its own managers (withoutManager).
	noManager bool
	// revokeTimeout is the manager's --revoke-on-delete-timeout
	// (withRevokeTimeout); zero: the default.
	revokeTimeout time.Duration
}

// withRevokeTimeout gives the manager a --revoke-on-delete-timeout of d.
func withRevokeTimeout(d time.Duration) harnessOption {
	return func(h *harness) { h.revokeTimeout = d }
}

// withoutManager leaves starting managers to the test.
func withoutManager() harnessOption {
	return func(h *harness) { h.noManager = true }
}

// withClientClock gives the ServiceNow client (which dates assertions and
// tokens) a clock of the test's.
func withClientClock(now func() time.Time) harnessOption {
	return func(h *harness) { h.clientNow = now }
}

// withClock gives the reconciler a clock of the test's, to let time pass
// for it (the simulator keeps the wall clock).
func withClock(now func() time.Time) harnessOption {
	return func(h *harness) { h.now = now }
}

// harnessOption changes how a harness starts.
type harnessOption func(*harness)

// newHarness starts a simulator with the given access-token lifespan and a
// manager. Token requests time out after a second so that hang faults stay
// quick.
func newHarness(t *testing.T, lifespan time.Duration, opts ...harnessOption) *harness {
	t.Helper()
	// The simulator fetches JWKS documents from the authorization server
	// (withJWT), trusting what the pool comes to hold.
	jwksTrust := x509.NewCertPool()
	sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: lifespan, ClientCredentialsEnabled: true,
		JWKSClient: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: jwksTrust, MinVersion: tls.VersionTLS12}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	sim.AddUser(simulator.User{Username: appUser, Password: "unused-app-user-password"})
	sim.AddUser(simulator.User{Username: username, Password: password})
	sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser})

	h := &harness{
		t: t, g: NewWithT(t), ctx: context.Background(),
		ns: env.Namespace(t), sim: sim, logs: &testenv.SyncBuffer{}, writes: &atomic.Int64{}, jwksTrust: jwksTrust,
	}
	for _, o := range opts {
		o(h)
	}
	if h.noManager {
		return h
	}
	h.startManager()
	t.Cleanup(h.stopManager)
	return h
}

// startManager starts a manager like cmd/main.go does, restricted to the
// test's namespace, logging at debug level into h.logs and counting every
// write its client makes.
func (h *harness) startManager() {
	h.t.Helper()
	// The wiring registers the connection metrics here: a registry per
	// manager, since tests start many in one process.
	h.metrics = prometheus.NewPedanticRegistry()
	h.mgr, h.stop = env.StartManager(h.t, testenv.Manager{
		Metrics:       h.metrics,
		Namespaces:    []string{h.ns},
		Tokens:        testenv.ClientWithClock(h.t, h.sim, time.Second, h.clientNow),
		Authorization: h.authz,
		Now:           h.now,
		RevokeTimeout: h.revokeTimeout,
		Logs:          h.logs,
		NewClient: func(cfg *rest.Config, opts client.Options) (client.Client, error) {
			c, err := client.New(cfg, opts)
			return &countingClient{Client: c, writes: h.writes}, err
		},
	})
}

func (h *harness) stopManager() { h.stop() }

// credentials creates (or replaces) the credentials Secret.
func (h *harness) credentials(name string, data map[string]string) *corev1.Secret {
	h.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name}, StringData: data}
	var existing corev1.Secret
	if err := env.Client.Get(h.ctx, client.ObjectKeyFromObject(s), &existing); err == nil {
		existing.Data, existing.StringData = nil, data
		h.g.Expect(env.Client.Update(h.ctx, &existing)).To(Succeed())
		return &existing
	}
	h.g.Expect(env.Client.Create(h.ctx, s)).To(Succeed())
	return s
}

// clientCredentials is the data of a credentials Secret for the client
// credentials grant against the test's simulator.
func (h *harness) clientCredentials() map[string]string {
	return map[string]string{"instance": h.instanceURL(), "client_id": clientID, "client_secret": clientSecret}
}

// instanceURL is the simulator's base URL with the host name localhost,
// which the test manager's allowlist permits (an IP address would not match
// a domain suffix, as with real instances).
func (h *harness) instanceURL() string {
	return h.sim.LocalhostURL()
}

// connection creates a connection using credentials Secret creds.
func (h *harness) connection(name, creds string, grant snowv1.GrantType, mutate ...func(*snowv1.ServiceNowConnection)) *snowv1.ServiceNowConnection {
	h.t.Helper()
	c := &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name},
		Spec: snowv1.ServiceNowConnectionSpec{
			CredentialsSecretRef: snowv1.SecretReference{Name: creds},
			GrantType:            grant,
		},
	}
	for _, m := range mutate {
		m(c)
	}
	h.g.Expect(env.Client.Create(h.ctx, c)).To(Succeed())
	return c
}

// get reads the connection's current state from the API server.
func (h *harness) get(name string) *snowv1.ServiceNowConnection {
	var c snowv1.ServiceNowConnection
	h.g.Expect(env.Client.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &c)).To(Succeed())
	return &c
}

// condition returns the connection's condition of type typ, or nil.
func (h *harness) condition(name, typ string) *metav1.Condition {
	for _, c := range h.get(name).Status.Conditions {
		if c.Type == typ {
			return &c
		}
	}
	return nil
}

// readyStatus is the Ready condition's status and reason, for Eventually.
func (h *harness) readyStatus(name string) func() string {
	return func() string {
		c := h.condition(name, snowv1.ConditionReady)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason
	}
}

// conditionReason is the reason of a condition that is present, "" if absent.
func (h *harness) conditionReason(name, typ string) func() string {
	return func() string {
		if c := h.condition(name, typ); c != nil {
			return c.Reason
		}
		return ""
	}
}

// tokenSecret reads a token Secret; nil when it does not exist.
func (h *harness) tokenSecret(name string) *corev1.Secret {
	var s corev1.Secret
	if err := env.Client.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, &s); err != nil {
		return nil
	}
	return &s
}

// accessToken is the access_token in a token Secret, "" when absent.
func (h *harness) accessToken(name string) func() string {
	return func() string {
		if s := h.tokenSecret(name); s != nil {
			return string(s.Data[snowv1.TokenKeyAccessToken])
		}
		return ""
	}
}

// tokenRequests counts the token requests the simulator received for grant.
func (h *harness) tokenRequests(grant string) func() int {
	return func() int { return h.sim.TokenRequests(clientID, grant) }
}

// requestRefresh sets the force-refresh annotation to a new value.
func (h *harness) requestRefresh(name, value string) {
	h.t.Helper()
	c := h.get(name)
	patch := client.MergeFrom(c.DeepCopy())
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[snowv1.AnnotationRefreshRequestedAt] = value
	h.g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
}

// annotate sets an annotation of the connection.
func (h *harness) annotate(name, key, value string) {
	h.t.Helper()
	c := h.get(name)
	patch := client.MergeFrom(c.DeepCopy())
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[key] = value
	h.g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
}

// reconciles is how many reconciles of the servicenowconnection controller
// finished in this process, read from controller-runtime's own metric.
func reconciles() float64 {
	families, err := ctrlmetrics.Registry.(prometheus.Gatherer).Gather()
	if err != nil {
		return -1
	}
	var total float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValue(m, "controller") == "servicenowconnection" {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// countingClient counts every write the manager makes to the API server.
type countingClient struct {
	client.Client
	writes *atomic.Int64
}

func (c *countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.writes.Add(1)
	return c.Client.Create(ctx, obj, opts...)
}

func (c *countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.writes.Add(1)
	return c.Client.Update(ctx, obj, opts...)
}

func (c *countingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	c.writes.Add(1)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func (c *countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.writes.Add(1)
	return c.Client.Delete(ctx, obj, opts...)
}

func (c *countingClient) Status() client.SubResourceWriter {
	return &countingStatus{SubResourceWriter: c.Client.Status(), writes: c.writes}
}

type countingStatus struct {
	client.SubResourceWriter
	writes *atomic.Int64
}

func (s *countingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.writes.Add(1)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s *countingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.writes.Add(1)
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}
