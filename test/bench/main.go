package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// scenarioNames are the -scenarios values, in run order.
var scenarioNames = []string{"cold", "restart", "memory", "steady", "latency"}

// config is the command line.
type config struct {
	n              int
	scenarios      map[string]bool
	simLatency     time.Duration
	concurrency    int
	qps            float64
	burst          int
	restartWindow  time.Duration
	unrelated      int
	unrelatedSize  int
	steadyLifespan time.Duration
	steadyDuration time.Duration
	probes         int
	probeInterval  time.Duration
	settle         time.Duration
	out            string
	managerBin     string
	build          bool
	managerArgs    []string
	profileDir     string
	smoke          bool
	timeout        time.Duration
	command        string
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var scenarios, managerArgs string
	fs.IntVar(&c.n, "n", 1000, "number of connections")
	fs.StringVar(&scenarios, "scenarios", strings.Join(scenarioNames, ","),
		"comma-separated scenarios to report: "+strings.Join(scenarioNames, ", "))
	fs.DurationVar(&c.simLatency, "sim-latency", 50*time.Millisecond, "response latency of the simulator's token endpoint")
	fs.IntVar(&c.concurrency, "concurrency", 32, "manager --max-concurrent-reconciles, and the floor's concurrency")
	fs.Float64Var(&c.qps, "qps", 100, "manager --kube-api-qps, and the floor client's QPS")
	fs.IntVar(&c.burst, "burst", 200, "manager --kube-api-burst, and the floor client's burst")
	fs.DurationVar(&c.restartWindow, "restart-window", time.Minute, "restart: how long after ready to count token requests")
	fs.IntVar(&c.unrelated, "unrelated", 5000, "memory: unrelated Secrets to add")
	fs.IntVar(&c.unrelatedSize, "unrelated-size", 16<<10, "memory: data bytes per unrelated Secret")
	fs.DurationVar(&c.steadyLifespan, "steady-lifespan", time.Minute, "steady: access token lifespan")
	fs.DurationVar(&c.steadyDuration, "steady-duration", 4*time.Minute, "steady: measurement window")
	fs.IntVar(&c.probes, "probes", 5, "latency: connections created one at a time while the N connections refresh")
	fs.DurationVar(&c.probeInterval, "probe-interval", 10*time.Second, "latency: pause between probes")
	fs.DurationVar(&c.settle, "settle", 10*time.Second, "how long the manager must be idle before memory is read")
	fs.StringVar(&c.out, "out", "bin/bench/results.json", "JSON results file (a .md table is written beside it)")
	fs.StringVar(&c.managerBin, "manager", "bin/manager", "manager binary")
	fs.BoolVar(&c.build, "build", true, "build the manager binary from ./cmd first")
	fs.StringVar(&managerArgs, "manager-args", "", "extra manager flags, space-separated (e.g. --kube-api-qps=200 to try a limit)")
	fs.StringVar(&c.profileDir, "profile-dir", "", "if set, save the manager's CPU and heap profiles (pprof) here")
	fs.BoolVar(&c.smoke, "smoke", false,
		"small and quick (N=20, short phases; explicit flags still win) and fail unless the harness produced sane figures")
	fs.DurationVar(&c.timeout, "timeout", 40*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.smoke {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		smokeDefaults := map[string]string{
			"n": "20", "restart-window": "2s", "unrelated": "50", "steady-lifespan": "8s",
			"steady-duration": "10s", "probes": "2", "probe-interval": "1s", "settle": "1s", "timeout": "3m",
			"out": "bin/bench/smoke.json",
		}
		for name, v := range smokeDefaults {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return nil, err
				}
			}
		}
	}
	c.scenarios = map[string]bool{}
	for _, s := range strings.Split(scenarios, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(scenarioNames, s) {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(scenarioNames, ", "))
		}
		c.scenarios[s] = true
	}
	c.managerArgs = strings.Fields(managerArgs)
	switch {
	case c.n < 1:
		return nil, errors.New("-n must be at least 1")
	case c.concurrency < 1:
		return nil, errors.New("-concurrency must be at least 1")
	case c.steadyLifespan < 6*time.Second:
		// Status keeps whole seconds and the operator waits at least a
		// second between planned requests: shorter lifespans measure those
		// roundings, not the operator.
		return nil, errors.New("-steady-lifespan must be at least 6s")
	}
	c.command = strings.TrimSpace("go run ./test/bench " + strings.Join(args, " "))
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	// controller-runtime's clients and caches in this process log nothing
	// worth reading here; the manager's logs go to a file.
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	res, err := run(ctx, cfg)
	cancel()
	stop()
	if res != nil {
		if werr := writeResults(cfg, res); werr != nil && err == nil {
			err = werr
		}
	}
	if err == nil && cfg.smoke {
		err = res.sane(cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run runs the scenarios in order and returns what it measured, even when a
// later step fails (the figures so far are still worth writing).
func run(ctx context.Context, cfg *config) (*results, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	workDir := filepath.Join(root, "bin", "bench")
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, err
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			return nil, err
		}
	}
	b := &bench{cfg: cfg, root: root, workDir: workDir}
	defer b.close()

	res := newResults(cfg)
	step := func(name string, f func() error) error {
		logf("== %s", name)
		started := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		logf("   %s took %s", name, time.Since(started).Round(100*time.Millisecond))
		return nil
	}
	steps := []struct {
		name string
		run  func() error
		when bool
	}{
		{"start the control plane and the simulator", func() error { return b.start(ctx, res) }, true},
		{"floor", func() error { return b.floor(ctx, res) }, cfg.scenarios["cold"]},
		{"start the manager", func() error { return b.firstManager(ctx, res) }, true},
		{"cold start", func() error { return b.coldStart(ctx, res) }, true},
		{"restart", func() error { return b.restart(ctx, res) }, cfg.scenarios["restart"] || cfg.scenarios["memory"]},
		{"memory", func() error { return b.memory(ctx, res) }, cfg.scenarios["memory"]},
		{"idle reconciles", func() error { return b.idle(ctx, res) }, cfg.scenarios["steady"]},
		{"steady state", func() error { return b.steady(ctx, res) }, cfg.scenarios["steady"] || cfg.scenarios["latency"]},
	}
	for _, s := range steps {
		if !s.when {
			continue
		}
		if err := step(s.name, s.run); err != nil {
			res.finish(b)
			return res, err
		}
	}
	res.finish(b)
	return res, nil
}

// repoRoot is the nearest folder up from the working directory that holds
// go.mod: `make bench` and `go run ./test/bench` both run from the top.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run from the repository")
		}
		dir = parent
	}
}

// logf reports progress on stderr; stdout carries only the table.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
