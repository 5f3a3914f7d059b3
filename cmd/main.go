// Command manager runs the snowauth operator: it keeps the access token of
// every ServiceNowConnection fresh in that connection's token Secret.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // cloud providers' kubeconfig auth for `make run`
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/controllers"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/version"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(snowv1.AddToScheme(scheme))
}

// options are the manager's command-line flags.
type options struct {
	metricsAddr, probeAddr string
	pprofAddr              string
	secureMetrics          bool
	enableHTTP2            bool
	leaderElect            bool
	leaderElectionNS       string
	leaderElectionID       string
	allowedDomains         string
	caBundleFile           string
	requestTimeout         time.Duration
	maxConcurrent          int
	qps                    float64
	burst                  int
	watchNamespaces        string
	authExternalURL        string
	authKeySecret          string
	authLinkTTL            time.Duration
	revokeTimeout          time.Duration
	leaseDuration          time.Duration
	renewDeadline          time.Duration
	retryPeriod            time.Duration
	memoryLimit            string
	connectionSelector     string
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", "0",
		"Address of the metrics endpoint, e.g. :8443 (HTTPS) or :8080 (with --metrics-secure=false). 0 disables it.")
	flag.BoolVar(&o.secureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS, allowing only callers that may GET /metrics (SubjectAccessReview).")
	flag.BoolVar(&o.enableHTTP2, "enable-http2", false,
		"Serve metrics over HTTP/2 too. Off by default because of the HTTP/2 Rapid Reset and Stream Cancellation CVEs.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "0",
		"Address of Go's pprof endpoints (/debug/pprof/), e.g. 127.0.0.1:6060, for profiling. 0 disables it. "+
			"Unauthenticated: bind it to loopback only.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false,
		"Elect a leader so that only one replica refreshes tokens. Needed when running more than one replica.")
	flag.StringVar(&o.leaderElectionID, "leader-election-id", "snowauth.servicenow.snowauth.dev",
		"Name of the leader election Lease. Give each snowauth installation in one namespace its own.")
	flag.StringVar(&o.leaderElectionNS, "leader-election-namespace", "",
		"Namespace of the leader election Lease (default: the Pod's namespace).")
	flag.DurationVar(&o.leaseDuration, "leader-election-lease-duration", 15*time.Second,
		"How long standbys wait, after the leader's last renewal, before taking its Lease.")
	flag.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", 10*time.Second,
		"How long the leader keeps trying to renew its Lease before it gives up and exits (Kubernetes restarts it). "+
			"Raise it, and the lease duration above it, where the API server can be away longer, "+
			"e.g. a single control-plane node being upgraded.")
	flag.DurationVar(&o.retryPeriod, "leader-election-retry-period", 2*time.Second,
		"How often candidates try to take the Lease and the leader renews it.")
	flag.StringVar(&o.allowedDomains, "allowed-instance-domains", strings.Join(servicenow.DefaultAllowedDomains, ","),
		"Comma-separated domain suffixes that instance URLs may use. Credentials are only ever sent to these hosts.")
	flag.StringVar(&o.caBundleFile, "ca-bundle", "",
		"PEM file of extra CA certificates to trust for on-premise instances, added to the system trust store.")
	flag.DurationVar(&o.requestTimeout, "token-request-timeout", 30*time.Second, "Time limit of one token request.")
	flag.IntVar(&o.maxConcurrent, "max-concurrent-reconciles", 32,
		"Connections reconciled in parallel. A reconcile mostly waits (for a token request, for the API server), "+
			"so workers cost little; API writes stay within --kube-api-qps whatever their number.")
	flag.Float64Var(&o.qps, "kube-api-qps", 100, "Sustained queries per second to the Kubernetes API.")
	flag.IntVar(&o.burst, "kube-api-burst", 200, "Burst of queries to the Kubernetes API.")
	flag.StringVar(&o.watchNamespaces, "watch-namespaces", "",
		"Comma-separated namespaces to watch (default: all). Restricting it lets snowauth run with namespaced Roles.")
	flag.StringVar(&o.authExternalURL, "authorization-external-url", "",
		"Base URL at which people's browsers reach the authorization server (its own Deployment, cmd/authserver), "+
			"e.g. https://snowauth.example.com; it must match the server's --external-url. Its /callback is the Redirect URL "+
			"to register at ServiceNow. Empty: the AuthorizationCode grant is off.")
	flag.StringVar(&o.authKeySecret, "authorization-key-secret", "snowauth-authorization-key",
		"Secret, in the manager's namespace, holding the keys that sign authorization links (key, and previous while "+
			"rotating); created if absent. The authorization server mounts it.")
	flag.DurationVar(&o.authLinkTTL, "authorization-link-ttl", authserver.DefaultLinkTTL,
		"How long an authorization link works.")
	flag.StringVar(&o.connectionSelector, "connection-selector", "",
		"A label selector (such as snowauth.dev/shard=a): this manager serves only the connections it matches, so that "+
			"several managers (shards) share the connections. Give each shard its own --leader-election-id. Empty: every connection.")
	flag.StringVar(&o.memoryLimit, "memory-limit", "",
		"The container's memory limit (a quantity such as 256Mi; the chart passes limits.memory through the downward API). "+
			"The Go runtime then keeps the heap within 90% of it, collecting garbage more often as it nears it, instead of letting it grow to twice the live heap. "+
			"Empty or 0: Go's default (or the GOMEMLIMIT environment variable).")
	flag.DurationVar(&o.revokeTimeout, "revoke-on-delete-timeout", controllers.DefaultRevokeTimeout,
		"How long after a connection with spec.revokeOnDelete is deleted snowauth keeps retrying to revoke its tokens "+
			"before it removes its finalizer anyway, with a Warning Event naming what it could not revoke.")
	printVersion := flag.Bool("version", false, "Print the manager's version and exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *printVersion {
		v := version.Get()
		fmt.Printf("snowauth manager %s (revision %s, %s)\n", v.Version, v.Revision, v.GoVersion)
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(o); err != nil {
		ctrl.Log.WithName("setup").Error(err, "manager stopped")
		os.Exit(1)
	}
}

func run(o options) error {
	log := ctrl.Log.WithName("setup")
	// client-go refuses these too, but only once the manager starts, and
	// in its own words.
	if o.leaderElect && (o.leaseDuration <= o.renewDeadline || o.renewDeadline <= o.retryPeriod*6/5) {
		return fmt.Errorf("leader election timings: need --leader-election-lease-duration (%s) > "+
			"--leader-election-renew-deadline (%s) > 1.2 × --leader-election-retry-period (%s)",
			o.leaseDuration, o.renewDeadline, o.retryPeriod)
	}

	if err := setMemoryLimit(o.memoryLimit); err != nil {
		return err
	}

	var caBundle []byte
	if o.caBundleFile != "" {
		b, err := os.ReadFile(o.caBundleFile)
		if err != nil {
			return fmt.Errorf("reading --ca-bundle: %w", err)
		}
		caBundle = b
	}
	tokens, err := servicenow.NewClient(servicenow.Options{
		AllowedDomains: splitList(o.allowedDomains),
		CABundle:       caBundle,
		Timeout:        o.requestTimeout,
	})
	if err != nil {
		return fmt.Errorf("configuring the ServiceNow client: %w", err)
	}

	var tlsOpts []func(*tls.Config)
	if !o.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: o.metricsAddr, SecureServing: o.secureMetrics, TLSOpts: tlsOpts}
	if o.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	namespaces := splitList(o.watchNamespaces)
	var shard labels.Selector
	if o.connectionSelector != "" {
		if shard, err = labels.Parse(o.connectionSelector); err != nil {
			return fmt.Errorf("--connection-selector %q: %w", o.connectionSelector, err)
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         controllers.CacheOptions(namespaces, handoverNamespace(o), shard),
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        o.probeAddr,
		PprofBindAddress:              o.pprofAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              o.leaderElectionID,
		LeaderElectionNamespace:       o.leaderElectionNS,
		LeaderElectionReleaseOnCancel: true, // the process exits right after the manager stops
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	authorization, err := setupAuthorization(mgr, o)
	if err != nil {
		return err
	}
	if _, err := controllers.AddConnectionController(mgr, controllers.Options{
		Tokens:        tokens,
		Authorization: authorization,
		Namespaces:    namespaces,
		Controller:    controller.Options{MaxConcurrentReconciles: o.maxConcurrent},
		RevokeTimeout: o.revokeTimeout,
		Sharded:       shard != nil,
	}); err != nil {
		return fmt.Errorf("setting up the controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}

	log.Info("starting manager", "version", version.Get().Version, "allowedInstanceDomains", o.allowedDomains, "watchNamespaces", namespaces,
		"connectionSelector", o.connectionSelector)
	// The signal handler cancels on SIGTERM/SIGINT; the manager then stops
	// its controllers, letting in-flight reconciles finish.
	return mgr.Start(ctrl.SetupSignalHandler())
}

// setupAuthorization configures the AuthorizationCode grant when
// --authorization-external-url is set (nil when off): the signing keys (the
// Secret is created once if absent) and where the authorization server
// hands authorizations over. The server itself is its own Deployment
// (cmd/authserver): the manager serves nothing to browsers.
func setupAuthorization(mgr ctrl.Manager, o options) (*controllers.Authorization, error) {
	if o.authExternalURL == "" {
		return nil, nil
	}
	external, err := authserver.ParseExternalURL(o.authExternalURL)
	if err != nil {
		return nil, fmt.Errorf("--authorization-external-url: %w", err)
	}
	ns := operatorNamespace()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := authserver.EnsureKeySecret(ctx, mgr.GetClient(), mgr.GetAPIReader(), ns, o.authKeySecret); err != nil {
		return nil, err
	}
	links := &authserver.Links{Keys: authserver.KeysFromSecret(mgr.GetAPIReader(), ns, o.authKeySecret), ExternalURL: external, TTL: o.authLinkTTL}
	ctrl.Log.WithName("setup").Info("AuthorizationCode grant enabled", "redirectURL", links.RedirectURI(), "handoverNamespace", ns)
	return &controllers.Authorization{Links: links, Namespace: ns}, nil
}

// handoverNamespace is where the authorization server hands
// authorizations over: the operator's namespace, "" when the grant is off.
func handoverNamespace(o options) string {
	if o.authExternalURL == "" {
		return ""
	}
	return operatorNamespace()
}

// operatorNamespace is the namespace the manager runs in: POD_NAMESPACE
// (the downward API), else the ServiceAccount's, else snowauth-system.
func operatorNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "snowauth-system"
}

// splitList splits a comma-separated flag, dropping blanks.
// setMemoryLimit gives the Go runtime a soft memory limit of 90% of the
// container's (the rest is for what the runtime does not count: stacks of
// exiting goroutines, the binary's pages), unless GOMEMLIMIT says otherwise.
// Without one, the heap may grow to twice what is live before a collection
// (GOGC=100), and RSS with it.
func setMemoryLimit(limit string) error {
	if limit == "" || os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	q, err := resource.ParseQuantity(limit)
	if err != nil {
		return fmt.Errorf("--memory-limit %q: %w", limit, err)
	}
	if q.Value() <= 0 {
		return nil
	}
	debug.SetMemoryLimit(q.Value() / 10 * 9)
	ctrl.Log.WithName("setup").Info("memory limit", "container", q.String(), "goSoftLimitBytes", q.Value()/10*9)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
