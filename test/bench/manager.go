package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// managerProc is one run of the manager binary.
type managerProc struct {
	cmd                         *exec.Cmd
	metricsURL, readyURL, pprof string
	logPath                     string
	started                     time.Time
	exited                      chan struct{}
	exitErr                     error
}

// buildManager builds ./cmd into the manager binary, as `make build` does.
func (b *bench) buildManager(ctx context.Context) error {
	bin := b.managerBin()
	if !b.cfg.build {
		_, err := os.Stat(bin)
		return err
	}
	// -buildvcs=auto overrides a GOFLAGS=-buildvcs=false so that the
	// binary records the revision (and whether the tree was modified) for
	// the results.
	cmd := exec.CommandContext(ctx, "go", "build", "-buildvcs=auto", "-o", bin, "./cmd")
	cmd.Dir = b.root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

func (b *bench) managerBin() string {
	if filepath.IsAbs(b.cfg.managerBin) {
		return b.cfg.managerBin
	}
	return filepath.Join(b.root, b.cfg.managerBin)
}

// startManager starts a manager process and waits until /readyz answers.
func (b *bench) startManager(ctx context.Context) (*managerProc, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	b.mgrCount++
	m := &managerProc{
		metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0]),
		readyURL:   fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]),
		pprof:      fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", ports[2]),
		logPath:    filepath.Join(b.workDir, fmt.Sprintf("manager-%d.log", b.mgrCount)),
		exited:     make(chan struct{}),
	}
	args := []string{
		"--allowed-instance-domains=localhost",
		"--ca-bundle=" + b.caFile,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]),
		"--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", ports[2]),
		fmt.Sprintf("--max-concurrent-reconciles=%d", b.cfg.concurrency),
		fmt.Sprintf("--kube-api-qps=%g", b.cfg.qps),
		fmt.Sprintf("--kube-api-burst=%d", b.cfg.burst),
	}
	args = append(args, b.cfg.managerArgs...)
	logFile, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	// Not CommandContext: the manager must get SIGTERM and time to stop,
	// not SIGKILL, when the run is interrupted.
	m.cmd = exec.Command(b.managerBin(), args...) //nolint:noctx // stopped with SIGTERM by stop()
	m.cmd.Env = append(os.Environ(), "KUBECONFIG="+b.kubeconfig)
	if b.cfg.profileDir != "" {
		// Sample an allocation every 4 KiB instead of 512 KiB, so that
		// heap profiles can tell a few MiB apart by where they were
		// allocated.
		m.cmd.Env = append(m.cmd.Env, "GODEBUG=memprofilerate=4096")
	}
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	go func() {
		m.exitErr = m.cmd.Wait()
		_ = logFile.Close()
		close(m.exited)
	}()
	if err := m.waitReady(ctx); err != nil {
		_ = m.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, m.logPath)
	}
	return m, nil
}

func (m *managerProc) pid() int { return m.cmd.Process.Pid }

// waitReady polls /readyz, then /metrics: controller-runtime serves the
// probes before it starts the metrics server, so a ready manager may not
// be scrapable yet.
func (m *managerProc) waitReady(ctx context.Context) error {
	for _, u := range []string{m.readyURL, m.metricsURL} {
		if err := poll(ctx, 50*time.Millisecond, 2*time.Minute, "the manager's "+u, func() (bool, error) {
			select {
			case <-m.exited:
				return false, fmt.Errorf("the manager exited: %w", m.exitErr)
			default:
			}
			_, err := httpGet(ctx, u)
			return err == nil, nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// stop sends SIGTERM and waits for the manager to finish its in-flight
// reconciles; SIGKILL after 30 seconds.
func (m *managerProc) stop() error {
	select {
	case <-m.exited:
		return nil
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
		return errors.New("the manager did not stop within 30s of SIGTERM")
	}
	var exitErr *exec.ExitError
	if m.exitErr != nil && !errors.As(m.exitErr, &exitErr) {
		return m.exitErr
	}
	return nil
}

// procStatus reads the manager's resident set size and its peak from
// /proc/PID/status, in bytes.
func (m *managerProc) memory() (rss, peak uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.pid()))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak, sc.Err()
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux architecture Go supports (the kernel fixes it for user space).
const clockTicks = 100

// cpu reads the manager's user+system CPU time from /proc/PID/stat.
func (m *managerProc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.pid()))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	fields := strings.Fields(rest)
	if len(fields) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// memSample is a settled reading of the manager's memory.
type memSample struct {
	// RSS is the resident set size, what the kernel charges the process.
	RSS uint64 `json:"rssBytes"`
	// HeapAlloc is the Go heap's live bytes right after a forced garbage
	// collection: the memory snowauth's data really holds, without the
	// garbage that RSS includes until the next GC and scavenge.
	HeapAlloc uint64 `json:"liveHeapBytes"`
}

// sampleMemory lets the manager sit for settle without being scraped (a
// scrape of /metrics allocates per connection, which would show in RSS),
// reads RSS five times half a second apart and keeps the median, which
// shrugs off a GC cycle caught in the middle, then reads the live heap.
func (m *managerProc) sampleMemory(ctx context.Context, settle time.Duration) (memSample, error) {
	select {
	case <-ctx.Done():
		return memSample{}, ctx.Err()
	case <-time.After(settle):
	}
	var rss []uint64
	for i := range 5 {
		if i > 0 {
			time.Sleep(min(500*time.Millisecond, settle/5))
		}
		r, _, err := m.memory()
		if err != nil {
			return memSample{}, err
		}
		rss = append(rss, r)
	}
	sort.Slice(rss, func(i, j int) bool { return rss[i] < rss[j] })
	live, err := m.liveHeap(ctx)
	if err != nil {
		return memSample{}, err
	}
	return memSample{RSS: rss[len(rss)/2], HeapAlloc: live}, nil
}

// liveHeap forces a GC in the manager (pprof's heap endpoint does so with
// gc=1) and reads HeapAlloc from the runtime.MemStats the text form ends with.
func (m *managerProc) liveHeap(ctx context.Context) (uint64, error) {
	body, err := httpGet(ctx, m.pprof+"heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("no HeapAlloc in the manager's heap profile")
}

// scrape reads the manager's metrics.
func (m *managerProc) scrape(ctx context.Context) (metrics, error) {
	body, err := httpGet(ctx, m.metricsURL)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(body)), nil
}

// waitIdle waits until the manager has been idle for settle: nothing queued,
// no reconcile running, and no reconcile finished in that time. minReconciles
// is how many reconciles must have run since zero or since from.
func (m *managerProc) waitIdle(ctx context.Context, settle time.Duration, from metrics, minReconciles float64, timeout time.Duration) (metrics, error) {
	var (
		last      float64 = -1
		lastMove          = time.Now()
		final     metrics
		reconcile = func(met metrics) float64 { return met.sum("controller_runtime_reconcile_total", nil) }
	)
	err := poll(ctx, 250*time.Millisecond, timeout, "the manager to go idle", func() (bool, error) {
		met, err := m.scrape(ctx)
		if err != nil {
			return false, err
		}
		r := reconcile(met)
		busy := met.sum("workqueue_depth", nil) > 0 || met.sum("controller_runtime_active_workers", nil) > 0 ||
			r-reconcile(from) < minReconciles
		if r != last || busy {
			last, lastMove = r, time.Now()
			return false, nil
		}
		final = met
		return time.Since(lastMove) >= settle, nil
	})
	return final, err
}

// profile saves a pprof profile (e.g. "heap", "profile?seconds=30") to dir.
func (m *managerProc) profile(ctx context.Context, dir, which, file string) error {
	body, err := httpGet(ctx, m.pprof+which)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, file), body, 0o644)
}

// httpGet returns the body of a 200 answer from a loopback endpoint.
func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// freePorts finds loopback ports nobody listens on. Another process could
// take one before the manager binds it; the manager would then fail to
// start and say so.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
