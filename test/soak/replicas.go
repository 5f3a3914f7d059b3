package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// replica is one manager process.
type replica struct {
	n       int
	cmd     *exec.Cmd
	metrics string
	exited  chan struct{}
	killed  bool // by killLeader, not on its own
}

// replicas are the manager processes, electing a leader in namespace
// system. Like the kubelet restarting a Pod's container, keep replaces a
// replica that exits, whether killed or on its own (a leader exits when it
// cannot renew its Lease, e.g. while the API server restarts).
type replicas struct {
	bin, kubeconfig, caFile, logDir string

	mu       sync.Mutex
	all      []*replica
	count    int
	selfExit int // replicas that exited on their own
	stopping bool
	wg       sync.WaitGroup
}

// keep starts a replica and replaces it whenever it exits, until stopAll.
func (rs *replicas) keep(ctx context.Context) error {
	r, err := rs.start(ctx)
	if err != nil {
		return err
	}
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		var lastErr error
		for {
			<-r.exited
			rs.mu.Lock()
			stopping := rs.stopping
			if !r.killed && !stopping {
				rs.selfExit++
				logf("manager %d exited on its own (%v); starting it again, as Kubernetes would", r.n, r.cmd.ProcessState)
			}
			rs.mu.Unlock()
			// A manager that cannot reach the API server exits at once
			// (a crash loop, while the API server restarts).
			for failed := 0; !stopping; failed++ {
				if !sleep(ctx, time.Second) {
					return
				}
				if r, err = rs.start(ctx); err == nil {
					if failed > 0 {
						logf("manager %d started after %d failed starts (the last: %v)", r.n, failed, lastErr)
					}
					break
				}
				lastErr = err
				rs.mu.Lock()
				stopping = rs.stopping
				rs.mu.Unlock()
			}
			if stopping {
				return
			}
		}
	}()
	return nil
}

// start starts a manager process and waits until it is ready (as a leader
// or a standby).
func (rs *replicas) start(ctx context.Context) (*replica, error) {
	metrics, err := freePort()
	if err != nil {
		return nil, err
	}
	probes, err := freePort()
	if err != nil {
		return nil, err
	}
	rs.mu.Lock()
	rs.count++
	n := rs.count
	rs.mu.Unlock()
	logs, err := os.Create(filepath.Join(rs.logDir, fmt.Sprintf("manager-%d.log", n)))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(context.Background(), rs.bin, //nolint:gosec // our own binary
		"--kubeconfig="+rs.kubeconfig, "--allowed-instance-domains=localhost", "--ca-bundle="+rs.caFile,
		"--leader-elect", "--leader-election-namespace="+system, "--token-request-timeout=3s",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metrics), "--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probes))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		_ = logs.Close()
		return nil, err
	}
	r := &replica{n: n, cmd: cmd, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics), exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logs.Close()
		rs.mu.Lock()
		rs.all = slices.DeleteFunc(rs.all, func(o *replica) bool { return o == r })
		rs.mu.Unlock()
		close(r.exited)
	}()
	rs.mu.Lock()
	stopping := rs.stopping
	if !stopping {
		rs.all = append(rs.all, r)
	}
	rs.mu.Unlock()
	if stopping {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-r.exited
		return nil, errors.New("stopping")
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if code, err := get(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", probes)); err == nil && code == http.StatusOK {
			return r, nil
		}
		select {
		case <-r.exited:
			return nil, fmt.Errorf("manager %d exited; see %s", n, logs.Name())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("manager %d not ready within a minute", n)
}

// leader returns the replica whose snowauth_leader is 1, or nil.
func (rs *replicas) leader(ctx context.Context) *replica {
	rs.mu.Lock()
	all := append([]*replica(nil), rs.all...)
	rs.mu.Unlock()
	for _, r := range all {
		if leads, err := r.leads(ctx); err == nil && leads {
			return r
		}
	}
	return nil
}

// killLeader SIGKILLs the leader (no graceful release of its Lease) and
// returns how long until another replica led.
func (rs *replicas) killLeader(ctx context.Context) (time.Duration, error) {
	old := rs.leader(ctx)
	if old == nil {
		return 0, errors.New("no replica leads")
	}
	killed := time.Now()
	rs.mu.Lock()
	old.killed = true
	rs.mu.Unlock()
	_ = old.cmd.Process.Kill()
	<-old.exited
	return rs.waitLeader(ctx, killed)
}

// waitLeader waits until a replica leads and returns how long that was
// after since.
func (rs *replicas) waitLeader(ctx context.Context, since time.Time) (time.Duration, error) {
	for time.Since(since) < 2*time.Minute {
		if rs.leader(ctx) != nil {
			return time.Since(since), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, errors.New("no replica led within two minutes")
}

// selfExits is how many replicas exited on their own.
func (rs *replicas) selfExits() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.selfExit
}

// stopAll stops every replica (SIGTERM) and keeps none.
func (rs *replicas) stopAll() {
	rs.mu.Lock()
	rs.stopping = true
	all := slices.Clone(rs.all)
	rs.mu.Unlock()
	for _, r := range all {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		<-r.exited
	}
	rs.wg.Wait()
}

// leads reads the replica's snowauth_leader gauge.
func (r *replica) leads(ctx context.Context) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.metrics, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		if line := s.Text(); strings.HasPrefix(line, "snowauth_leader ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "snowauth_leader ")) == "1", nil
		}
	}
	return false, s.Err()
}

func get(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
