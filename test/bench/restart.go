package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// restartManager stops the running manager and starts a new one.
func (b *bench) restartManager(ctx context.Context) error {
	if err := b.mgr.stop(); err != nil {
		return err
	}
	m, err := b.startManager(ctx)
	if err != nil {
		return err
	}
	b.mgr = m
	return nil
}

// restart restarts the manager while every token is fresh and counts the
// token requests from the new process's start until -restart-window after
// it is ready: status keeps each token's expiry and next refresh, so there
// should be none. The new manager, settled, also gives the memory
// scenario's reading with N connections.
func (b *bench) restart(ctx context.Context, res *results) error {
	if err := b.mgr.stop(); err != nil {
		return err
	}
	requestsBefore := len(b.sim.TokenRequestLog())
	m, err := b.startManager(ctx)
	if err != nil {
		return err
	}
	b.mgr = m
	ready := time.Now()
	r := &restartResult{ReadySeconds: ready.Sub(m.started).Seconds(), WindowSeconds: b.cfg.restartWindow.Seconds()}

	// The startup sweep: every connection is reconciled once as the
	// caches fill. Its end is when N reconciles have run and the queue is
	// empty.
	n := float64(b.cfg.n)
	deadline := ready.Add(b.cfg.restartWindow)
	for time.Now().Before(deadline) {
		met, err := m.scrape(ctx)
		if err != nil {
			return err
		}
		if r.SweepSeconds == 0 && met.reconciles() >= n && met.sum("workqueue_depth", nil) == 0 &&
			met.sum("controller_runtime_active_workers", nil) == 0 {
			r.SweepSeconds = time.Since(m.started).Seconds()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(250*time.Millisecond, time.Until(deadline))):
		}
	}
	met, err := m.scrape(ctx)
	if err != nil {
		return err
	}
	r.TokenRequests = len(b.sim.TokenRequestLog()) - requestsBefore
	r.Reconciles = met.reconciles()
	r.Requests = met.requests()
	r.Writes = r.Requests.writes()
	if b.cfg.scenarios["restart"] {
		res.Restart = r
	}
	logf("   %d token requests, %.0f writes in the first %s after ready", r.TokenRequests, r.Writes, b.cfg.restartWindow)

	if b.cfg.scenarios["memory"] {
		if _, err := m.waitIdle(ctx, min(2*time.Second, b.cfg.settle), nil, n, 5*time.Minute); err != nil {
			return err
		}
		s, err := m.sampleMemory(ctx, b.cfg.settle)
		if err != nil {
			return err
		}
		res.memory().WithN = s
		if b.cfg.profileDir != "" {
			if err := m.profile(ctx, b.cfg.profileDir, "heap", "heap-n.pb.gz"); err != nil {
				return err
			}
		}
	}
	return nil
}

// memory adds the unrelated Secrets and reads the memory of the running
// manager, then of a freshly started one: the fresh readings are the
// comparable ones (same start-up path, no garbage from the burst of
// events).
func (b *bench) memory(ctx context.Context, res *results) error {
	mem := res.memory()
	payload := make([]byte, b.cfg.unrelatedSize)
	for i := range payload {
		// Printable but varied, as a certificate or a config file is.
		payload[i] = byte('a' + i*7%26)
	}
	before, err := b.mgr.scrape(ctx)
	if err != nil {
		return err
	}
	started := time.Now()
	if err := parallel(ctx, b.cfg.unrelated, createWorkers, func(ctx context.Context, i int) error {
		return b.c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: nsUnrelated, Name: fmt.Sprintf("unrelated-%05d", i),
				Labels: map[string]string{"app.kubernetes.io/name": "someone-else"}},
			Data: map[string][]byte{"payload": payload},
		})
	}); err != nil {
		return fmt.Errorf("creating unrelated Secrets: %w", err)
	}
	logf("   created %d unrelated Secrets in %s", b.cfg.unrelated, time.Since(started).Round(time.Millisecond))
	after, err := b.mgr.waitIdle(ctx, min(2*time.Second, b.cfg.settle), before, 0, 5*time.Minute)
	if err != nil {
		return err
	}
	// A Secret snowauth does not use must not wake it up.
	mem.UnrelatedReconciles = after.reconciles() - before.reconciles()
	if mem.LiveWithUnrelated, err = b.mgr.sampleMemory(ctx, b.cfg.settle); err != nil {
		return err
	}
	if _, mem.PeakRSS, err = b.mgr.memory(); err != nil {
		return err
	}

	if err := b.restartManager(ctx); err != nil {
		return err
	}
	if _, err := b.mgr.waitIdle(ctx, min(2*time.Second, b.cfg.settle), nil, float64(b.cfg.n), 5*time.Minute); err != nil {
		return err
	}
	if mem.WithUnrelated, err = b.mgr.sampleMemory(ctx, b.cfg.settle); err != nil {
		return err
	}
	if b.cfg.profileDir != "" {
		if err := b.mgr.profile(ctx, b.cfg.profileDir, "heap", "heap-unrelated.pb.gz"); err != nil {
			return err
		}
	}
	logf("   RSS: %s empty, %s with %d connections, %s with %d unrelated Secrets too",
		mib(mem.Empty.RSS), mib(mem.WithN.RSS), b.cfg.n, mib(mem.WithUnrelated.RSS), b.cfg.unrelated)
	return nil
}

// buildRevision is the VCS revision go build stamped into the manager, with
// "+modified" for a work tree with changes.
func buildRevision(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output()
	if err != nil {
		return ""
	}
	var rev, modified string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "build" {
			switch k, v, _ := strings.Cut(f[1], "="); k {
			case "vcs.revision":
				rev = v
			case "vcs.modified":
				if v == "true" {
					modified = "+modified"
				}
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return rev + modified
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
