package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// config is the soak's flags.
type config struct {
	n            int
	duration     time.Duration
	lifespan     time.Duration
	faultGap     time.Duration
	faultMax     time.Duration
	killEvery    time.Duration
	restartEvery time.Duration
	seed         uint64
	smoke        bool
	keepLogDir   string
}

func parseFlags() *config {
	c := &config{}
	flag.IntVar(&c.n, "n", 200, "connections, spread over the two instance hosts")
	flag.DurationVar(&c.duration, "duration", 5*time.Minute, "how long faults, kills and restarts are injected")
	flag.DurationVar(&c.lifespan, "lifespan", 3*time.Minute,
		"access token lifespan at both instances; the third left at a planned refresh must outlast "+
			"the longest takeover (after an API server restart: its absence plus the Lease's 15 s)")
	flag.DurationVar(&c.faultGap, "fault-gap", 10*time.Second, "mean healthy time between two faults of one host")
	flag.DurationVar(&c.faultMax, "fault-max", 6*time.Second, "longest fault")
	flag.DurationVar(&c.killEvery, "kill-every", 40*time.Second,
		"mean time between two SIGKILLs of the leader; 0: none. A standby takes over when the Lease expires (about 17 s)")
	flag.DurationVar(&c.restartEvery, "restart-every", 75*time.Second,
		"mean time between two API server restarts (same etcd); 0: none. The API server is away for about 20 s, "+
			"longer than the leader's renew deadline: the leader exits and is started again, and a replica takes "+
			"the Lease 15 s after it is back")
	flag.Uint64Var(&c.seed, "seed", uint64(time.Now().UnixNano()), "random seed (printed, to replay a run)")
	flag.BoolVar(&c.smoke, "smoke", false,
		"small and quick (N=10, 25 s of faults on 24 s tokens, so every connection refreshes under them; no kills "+
			"and no API server restarts, whose takeover outlasts such short tokens); explicit flags still win")
	flag.StringVar(&c.keepLogDir, "logs", "", "keep the managers' logs in this folder")
	flag.Parse()
	if c.smoke {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"n": "10", "duration": "25s", "lifespan": "24s", "fault-gap": "4s", "fault-max": "2s", "kill-every": "0s", "restart-every": "0s"} {
			if !set[name] {
				_ = flag.Set(name, v)
			}
		}
	}
	return c
}

func main() {
	cfg := parseFlags()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	r, err := run(ctx, cfg)
	cancel()
	if r != nil {
		fmt.Print(r.table(cfg))
	}
	if err == nil && r != nil {
		err = r.verdict()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// faultKinds are the faults injected, from the reliability matrix: each a
// failure ServiceNow or the network can produce for a few seconds.
var faultKinds = []simulator.Fault{
	{Kind: simulator.FaultServerError, Status: http.StatusServiceUnavailable},
	{Kind: simulator.FaultHang},
	{Kind: simulator.FaultDropConnection},
	{Kind: simulator.FaultRateLimited, RetryAfter: 2 * time.Second},
	{Kind: simulator.FaultHibernating},
	{Kind: simulator.FaultMalformedJSON},
	{Kind: simulator.FaultResponse, Status: http.StatusOK, ContentType: "application/json", Body: `{"token_type":"Bearer","expires_in":1799}`},
}

const (
	namespace = "soak"
	system    = "soak-system"
	appUser   = "svc.soak"
)

// host is one ServiceNow instance and what was done to it.
type host struct {
	sim      *simulator.Simulator
	clientID string
	secret   string
}

func run(ctx context.Context, cfg *config) (*report, error) {
	rng := rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x5eed))
	logf("seed %d: %d connections, %s of chaos, tokens living %s", cfg.seed, cfg.n, cfg.duration, cfg.lifespan)
	env, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	defer func() { _ = env.Stop() }()
	work, err := os.MkdirTemp("", "snowauth-soak-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(work) }()
	logDir := cfg.keepLogDir
	if logDir == "" {
		logDir = work
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}

	// Two instance hosts, each with its own CA and OAuth client.
	var hosts []*host
	var caBundle []byte
	for i := range 2 {
		sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: cfg.lifespan, ClientCredentialsEnabled: true})
		if err != nil {
			return nil, err
		}
		defer sim.Close()
		h := &host{sim: sim, clientID: fmt.Sprintf("soak-client-%d", i), secret: fmt.Sprintf("soak-secret-%d-%d", i, rng.Uint64())}
		sim.AddUser(simulator.User{Username: appUser, Password: "unused"})
		sim.AddClient(simulator.OAuthClient{ID: h.clientID, Secret: h.secret, ApplicationUser: appUser})
		hosts = append(hosts, h)
		caBundle = append(caBundle, sim.CACertPEM()...)
	}
	caFile := filepath.Join(work, "ca.pem")
	if err := os.WriteFile(caFile, caBundle, 0o600); err != nil {
		return nil, err
	}
	kubeconfig, err := env.KubeConfig()
	if err != nil {
		return nil, err
	}
	kubeconfigFile := filepath.Join(work, "kubeconfig")
	if err := os.WriteFile(kubeconfigFile, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	managerBin := filepath.Join(work, "manager")
	logf("building the manager")
	build := exec.CommandContext(ctx, "go", "build", "-o", managerBin, "./cmd")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the manager: %w\n%s", err, out)
	}

	c := env.Client
	for _, ns := range []string{namespace, system} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}
	var keys []client.ObjectKey
	for i, h := range hosts {
		if err := c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("creds-%d", i)},
			StringData: map[string]string{"instance": h.sim.LocalhostURL(), "client_id": h.clientID, "client_secret": h.secret},
		}); err != nil {
			return nil, err
		}
	}
	for i := range cfg.n {
		name := fmt.Sprintf("conn-%04d", i)
		if err := c.Create(ctx, &snowv1.ServiceNowConnection{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Spec: snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantClientCredentials,
				CredentialsSecretRef: snowv1.SecretReference{Name: fmt.Sprintf("creds-%d", i%len(hosts))}},
		}); err != nil {
			return nil, err
		}
		keys = append(keys, client.ObjectKey{Namespace: namespace, Name: name + "-token"})
	}

	mgrs := &replicas{bin: managerBin, kubeconfig: kubeconfigFile, caFile: caFile, logDir: logDir}
	defer mgrs.stopAll()
	for range 2 {
		if err := mgrs.keep(ctx); err != nil {
			return nil, err
		}
	}
	inv := newInvariants(keys)
	logf("waiting for every connection's first token")
	if err := inv.waitAllValid(ctx, c, 3*time.Minute); err != nil {
		return nil, err
	}
	r := &report{seed: cfg.seed, faults: map[simulator.FaultKind]int{}}
	r.requestsBefore = countIssued(hosts)

	// Chaos: faults on each host, leader kills, and the invariant checker.
	chaos, stopChaos := context.WithTimeout(ctx, cfg.duration)
	defer stopChaos()
	var wg sync.WaitGroup
	var mu sync.Mutex
	checkDone := make(chan error, 1)
	checkCtx, stopCheck := context.WithCancel(ctx)
	go func() { checkDone <- inv.watch(checkCtx, c) }()
	for _, h := range hosts {
		seed := rng.Uint64()
		wg.Add(1)
		go func() {
			defer wg.Done()
			hr := rand.New(rand.NewPCG(seed, seed))
			for sleep(chaos, jitter(hr, cfg.faultGap)) {
				f := faultKinds[hr.IntN(len(faultKinds))]
				f.Path = "/oauth_token.do"
				h.sim.SetFault(f)
				mu.Lock()
				r.faults[f.Kind]++
				mu.Unlock()
				sleep(chaos, time.Duration(1+hr.Int64N(int64(cfg.faultMax))))
				h.sim.ClearFault()
			}
		}()
	}
	// Kubernetes faults, one at a time: leader kills and API server
	// restarts, each followed by the wait for a leader.
	wg.Add(1)
	go func() {
		defer wg.Done()
		k8s := kubeFaults{kill: cfg.killEvery, restart: cfg.restartEvery, rng: rng}
		for {
			restart, wait, ok := k8s.next()
			if !ok || !sleep(chaos, wait) {
				return
			}
			if !restart {
				took, err := mgrs.killLeader(ctx)
				if err != nil {
					logf("kill: %v", err)
					continue
				}
				mu.Lock()
				r.takeovers = append(r.takeovers, took)
				mu.Unlock()
				logf("killed the leader; a standby took over in %s", took.Round(100*time.Millisecond))
				continue
			}
			stopped := time.Now()
			var away time.Duration
			if err := env.RestartAPIServer(func() { away = time.Since(stopped) }); err != nil {
				logf("restarting the API server: %v", err)
				continue
			}
			away = time.Since(stopped)
			led, err := mgrs.waitLeader(ctx, stopped)
			if err != nil {
				logf("after the API server restart: %v", err)
				continue
			}
			mu.Lock()
			r.restarts = append(r.restarts, away)
			r.leaderless = append(r.leaderless, led)
			mu.Unlock()
			logf("restarted the API server: away %s, a replica led %s after the stop began",
				away.Round(100*time.Millisecond), led.Round(100*time.Millisecond))
		}
	}()
	wg.Wait()
	for _, h := range hosts {
		h.sim.ClearFault()
	}

	// Recovery: every connection must hold a valid token again within a
	// token's lifetime of the last fault.
	logf("chaos over; waiting for every connection to hold a fresh token")
	recoverErr := inv.waitAllValid(ctx, c, cfg.lifespan+time.Minute)
	stopCheck()
	if err := <-checkDone; err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	r.requestsAfter, r.issued = countIssued(hosts), countIssuedOK(hosts)
	r.selfExits = mgrs.selfExits()
	inv.fill(r)
	return r, recoverErr
}

// kubeFaults schedules leader kills and API server restarts (each with its
// mean gap; 0: none) one after the other: each gap is drawn after the
// previous fault is over, so the manager gets time to catch up between two.
type kubeFaults struct {
	kill, restart time.Duration
	rng           *rand.Rand
}

// next says which fault comes next (restart or kill), how long until it,
// and false when there are none.
func (k *kubeFaults) next() (restart bool, wait time.Duration, ok bool) {
	var untilKill, untilRestart time.Duration
	if k.kill > 0 {
		untilKill = jitter(k.rng, k.kill)
	}
	if k.restart > 0 {
		untilRestart = jitter(k.rng, k.restart)
	}
	switch {
	case k.kill == 0 && k.restart == 0:
		return false, 0, false
	case k.restart == 0 || k.kill > 0 && untilKill <= untilRestart:
		return false, untilKill, true
	default:
		return true, untilRestart, true
	}
}

// jitter is a random duration around mean (from half to one and a half).
func jitter(r *rand.Rand, mean time.Duration) time.Duration {
	return mean/2 + time.Duration(r.Int64N(int64(mean)+1))
}

// sleep waits d or until ctx ends, and says whether ctx is still going.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func countIssued(hosts []*host) int {
	n := 0
	for _, h := range hosts {
		n += len(h.sim.TokenRequestLog())
	}
	return n
}

// countIssuedOK counts the token requests answered with a token.
func countIssuedOK(hosts []*host) int {
	n := 0
	for _, h := range hosts {
		for _, rec := range h.sim.TokenRequestLog() {
			if rec.Status == http.StatusOK && rec.Fault == "" {
				n++
			}
		}
	}
	return n
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// freePort is a loopback port nothing listens on right now.
func freePort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// percentile of durations (p in [0, 1]); 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(p*float64(len(s)-1))]
}
