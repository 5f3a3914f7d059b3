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
	"strings"
	"sync"
	"syscall"
	"time"
)

// replica is one manager process.
type replica struct {
	cmd     *exec.Cmd
	metrics string
	exited  chan struct{}
}

// replicas are the manager processes, electing a leader in namespace
// system.
type replicas struct {
	bin, kubeconfig, caFile, logDir string

	mu    sync.Mutex
	all   []*replica
	count int
}

// start starts a manager process and waits until it is ready (as a leader
// or a standby).
func (rs *replicas) start(ctx context.Context) error {
	metrics, err := freePort()
	if err != nil {
		return err
	}
	probes, err := freePort()
	if err != nil {
		return err
	}
	rs.mu.Lock()
	rs.count++
	n := rs.count
	rs.mu.Unlock()
	logs, err := os.Create(filepath.Join(rs.logDir, fmt.Sprintf("manager-%d.log", n)))
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(context.Background(), rs.bin, //nolint:gosec // our own binary
		"--kubeconfig="+rs.kubeconfig, "--allowed-instance-domains=localhost", "--ca-bundle="+rs.caFile,
		"--leader-elect", "--leader-election-namespace="+system, "--token-request-timeout=3s",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metrics), "--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probes))
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		_ = logs.Close()
		return err
	}
	r := &replica{cmd: cmd, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics), exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = logs.Close(); close(r.exited) }()
	rs.mu.Lock()
	rs.all = append(rs.all, r)
	rs.mu.Unlock()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if code, err := get(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", probes)); err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("manager %d exited; see %s", n, logs.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("manager %d not ready within a minute", n)
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
	_ = old.cmd.Process.Kill()
	<-old.exited
	rs.mu.Lock()
	for i, r := range rs.all {
		if r == old {
			rs.all = append(rs.all[:i], rs.all[i+1:]...)
			break
		}
	}
	rs.mu.Unlock()
	for time.Since(killed) < 2*time.Minute {
		if rs.leader(ctx) != nil {
			return time.Since(killed), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, errors.New("no standby took over within two minutes")
}

func (rs *replicas) stopAll() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, r := range rs.all {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		<-r.exited
	}
	rs.all = nil
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
