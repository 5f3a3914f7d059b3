package testenv

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/snowauth/snowauth/controllers"
)

// Manager says how StartManager wires a manager. The zero value (plus
// Tokens) is cmd/main.go's wiring as the cluster administrator, watching
// every namespace, logging nowhere.
type Manager struct {
	// Config reaches the API server; default a copy of Env.Config. Set it
	// to impersonate a ServiceAccount.
	Config *rest.Config
	// Namespaces restricts the caches (nil: every namespace).
	Namespaces []string
	// ConnectionSelector makes the manager a shard serving the
	// connections it matches (--connection-selector); nil: all.
	ConnectionSelector labels.Selector
	// Tokens talks to ServiceNow (usually a servicenow.Client trusting a
	// simulator).
	Tokens controllers.TokenSource
	// Authorization enables the AuthorizationCode grant.
	Authorization *controllers.Authorization
	// Logs receives the manager's debug logs; nil discards them.
	Logs io.Writer
	// NewClient wraps the manager's client (to count writes, say).
	NewClient client.NewClientFunc
	// Metrics receives the per-connection metrics; nil: a registry of the
	// manager's own.
	Metrics prometheus.Registerer
	// Now is the reconciler's clock (nil: the wall clock), to skew it.
	Now func() time.Time
	// RevokeTimeout is --revoke-on-delete-timeout (zero: the default).
	RevokeTimeout time.Duration
	// Options changes the manager's options before it is created (leader
	// election, say).
	Options func(*ctrl.Options)
}

// StartManager builds a manager as cmd/main.go does, starts it, waits for
// its caches, and stops it when the test ends (or when stop is called).
func (e *Env) StartManager(t testing.TB, m Manager) (mgr ctrl.Manager, stop func()) {
	t.Helper()
	cfg := m.Config
	if cfg == nil {
		cfg = rest.CopyConfig(e.Config)
	}
	logs := m.Logs
	if logs == nil {
		logs = io.Discard
	}
	opts := ctrl.Options{
		Scheme:                 e.Scheme,
		Cache:                  controllers.CacheOptions(m.Namespaces, handovers(m.Authorization), m.ConnectionSelector),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 zap.New(zap.WriteTo(logs), zap.UseDevMode(true), zap.Level(zapLevelDebug)),
		NewClient:              m.NewClient,
	}
	if m.Options != nil {
		m.Options(&opts)
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		t.Fatalf("creating the manager: %v", err)
	}
	metrics := m.Metrics
	if metrics == nil {
		// Each manager's connection metrics go to a registry of its own:
		// tests start many managers in one process.
		metrics = prometheus.NewRegistry()
	}
	if _, err := controllers.AddConnectionController(mgr, controllers.Options{
		Tokens:        m.Tokens,
		Authorization: m.Authorization,
		Namespaces:    m.Namespaces,
		Sharded:       m.ConnectionSelector != nil,
		// Tests start many managers in one process, all with this
		// controller name.
		Controller:    controller.Options{SkipNameValidation: ptr.To(true)},
		Metrics:       metrics,
		Now:           m.Now,
		RevokeTimeout: m.RevokeTimeout,
	}); err != nil {
		t.Fatalf("setting up the controller: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("the manager's cache did not sync")
	}
	return mgr, stop
}

func handovers(a *controllers.Authorization) string {
	if a == nil {
		return ""
	}
	return a.Namespace
}

// zapLevelDebug lets through everything the reconciler logs, V(1) included.
const zapLevelDebug = zapcore.Level(-2)

// SyncBuffer is a bytes.Buffer safe for the manager's goroutines, to
// capture its logs.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
