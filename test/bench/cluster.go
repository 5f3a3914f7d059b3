package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// Namespaces. The manager watches all of them, as it does by default.
const (
	nsMain      = "bench"           // the N connections
	nsFloor     = "bench-floor"     // the floor's objects, deleted before the manager starts
	nsUnrelated = "bench-unrelated" // Secrets that are none of snowauth's business
	nsProbe     = "bench-probe"     // the latency probes' connections
)

// appUser is the OAuth Application User every client acts as; each client
// still gets its own token (the simulator keeps tokens per client and user).
const appUser = "svc.snowauth-bench"

// bench is one run's world.
type bench struct {
	cfg           *config
	root, workDir string

	env        *envtest.Environment
	admin      *rest.Config
	scheme     *k8sruntime.Scheme
	c          client.Client // this program's own client: fast, never the bottleneck
	kubeconfig string        // the manager's, written for it and removed at exit
	assets     string

	sim         *simulator.Simulator
	caFile      string
	instanceURL string

	mgr      *managerProc
	mgrCount int
	watch    *watcher
}

// start starts the control plane, the simulator and this program's watches.
func (b *bench) start(ctx context.Context, res *results) error {
	b.assets = os.Getenv("KUBEBUILDER_ASSETS")
	if b.assets == "" {
		matches, _ := filepath.Glob(filepath.Join(b.root, "bin", "k8s", "*", "kube-apiserver"))
		if len(matches) == 0 {
			return errors.New("KUBEBUILDER_ASSETS is not set and bin/k8s/ holds no kube-apiserver: run `make envtest` first")
		}
		b.assets = filepath.Dir(matches[len(matches)-1])
	}
	b.scheme = k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(b.scheme); err != nil {
		return err
	}
	if err := snowv1.AddToScheme(b.scheme); err != nil {
		return err
	}
	b.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(b.root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: b.assets,
		Scheme:                b.scheme,
	}
	cfg, err := b.env.Start()
	if err != nil {
		b.env = nil
		return fmt.Errorf("starting envtest from %s: %w", b.assets, err)
	}
	b.admin = cfg

	// The manager runs as a separate process and needs a kubeconfig: a
	// cluster-admin user of its own, as a deployed manager has its own
	// service account.
	user, err := b.env.AddUser(envtest.User{Name: "snowauth-bench-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	b.kubeconfig = filepath.Join(b.workDir, "manager.kubeconfig")
	if err := os.WriteFile(b.kubeconfig, kc, 0o600); err != nil {
		return err
	}

	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 5000, 10000
	if b.c, err = client.New(fast, client.Options{Scheme: b.scheme}); err != nil {
		return err
	}
	for _, ns := range []string{nsMain, nsFloor, nsUnrelated, nsProbe} {
		if err := b.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}

	b.sim, err = simulator.Start(simulator.Options{ClientCredentialsEnabled: true})
	if err != nil {
		return err
	}
	b.sim.AddUser(simulator.User{Username: appUser, Password: randomSecret()})
	if b.cfg.simLatency > 0 {
		b.sim.SetFault(simulator.Fault{Kind: simulator.FaultLatency, Path: "/oauth_token.do", Latency: b.cfg.simLatency})
	}
	b.caFile = filepath.Join(b.workDir, "simulator-ca.pem")
	if err := os.WriteFile(b.caFile, b.sim.CACertPEM(), 0o644); err != nil {
		return err
	}
	// The manager's allowlist holds domain names, as for real instances;
	// the certificate is valid for localhost too.
	b.instanceURL = b.sim.LocalhostURL()

	if b.watch, err = startWatcher(ctx, cfg, b.scheme); err != nil {
		return err
	}
	b.versions(ctx, res)
	return nil
}

// versions records what was measured.
func (b *bench) versions(ctx context.Context, res *results) {
	if dc, err := discovery.NewDiscoveryClientForConfig(b.admin); err == nil {
		if v, err := dc.ServerVersion(); err == nil {
			res.Machine.Kubernetes = v.GitVersion
		}
	}
	// hack/build-envtest.sh builds kube-apiserver without version stamps
	// (it reports v0.0.0-master); the folder it builds into names the
	// version.
	if strings.HasPrefix(res.Machine.Kubernetes, "v0.0.0") || res.Machine.Kubernetes == "" {
		if v, _, ok := strings.Cut(filepath.Base(b.assets), "-"); ok {
			res.Machine.Kubernetes = "v" + v
		}
	}
	if out, err := exec.CommandContext(ctx, filepath.Join(b.assets, "etcd"), "--version").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(line, "etcd Version: "); ok {
				res.Machine.Etcd = strings.TrimSpace(v)
			}
		}
	}
}

// close stops everything this run started, in reverse order.
func (b *bench) close() {
	if b.mgr != nil {
		if err := b.mgr.stop(); err != nil {
			logf("stopping the manager: %v", err)
		}
	}
	if b.watch != nil {
		b.watch.stop()
	}
	if b.sim != nil {
		b.sim.Close()
	}
	if b.env != nil {
		if err := b.env.Stop(); err != nil {
			logf("stopping envtest: %v", err)
		}
	}
	if b.kubeconfig != "" {
		_ = os.Remove(b.kubeconfig)
	}
}

// addClient registers an OAuth client with the simulator and returns the
// data of a credentials Secret for it.
func (b *bench) addClient(id string, lifespan time.Duration) map[string][]byte {
	secret := randomSecret()
	b.sim.AddClient(simulator.OAuthClient{ID: id, Secret: secret, ApplicationUser: appUser, AccessTokenLifespan: lifespan})
	return map[string][]byte{
		snowv1.CredentialsKeyInstance:     []byte(b.instanceURL),
		snowv1.CredentialsKeyClientID:     []byte(id),
		snowv1.CredentialsKeyClientSecret: []byte(secret),
	}
}

func credentialsSecret(ns, name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func connection(ns, name, creds string) *snowv1.ServiceNowConnection {
	return &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: snowv1.ServiceNowConnectionSpec{
			CredentialsSecretRef: snowv1.SecretReference{Name: creds},
			GrantType:            snowv1.GrantClientCredentials,
		},
	}
}

// Names of the i-th connection, its credentials Secret and OAuth client.
func connName(i int) string  { return fmt.Sprintf("conn-%05d", i) }
func credsName(i int) string { return fmt.Sprintf("creds-%05d", i) }
func clientID(i int) string  { return fmt.Sprintf("bench-%05d", i) }

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		once     sync.Once
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// deleteAll deletes the connections and Secrets of a namespace. envtest runs
// no garbage collector, so owned token Secrets go explicitly too.
func (b *bench) deleteAll(ctx context.Context, ns string) error {
	if err := b.c.DeleteAllOf(ctx, &snowv1.ServiceNowConnection{}, client.InNamespace(ns)); err != nil {
		return err
	}
	return b.c.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns))
}

// deleteObjects deletes objects, ignoring those already gone.
func (b *bench) deleteObjects(ctx context.Context, objs ...client.Object) error {
	for _, o := range objs {
		if err := b.c.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// randomSecret is a client secret or password nobody ever sees.
func randomSecret() string {
	p := make([]byte, 16)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

// poll calls done every interval until it returns true, an error, or
// timeout passes.
func poll(ctx context.Context, interval, timeout time.Duration, what string, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}
