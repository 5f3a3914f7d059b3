package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// createWorkers is how many goroutines this program creates objects with:
// enough that the API server, not this program, sets the pace.
const createWorkers = 16

// floor times the API writes the operator cannot avoid for N new
// connections, N token Secret creates and N status patches, made by a bare
// client with the manager's QPS, burst and concurrency, before the manager
// starts (so nothing else competes). The objects look like the operator's:
// same labels, annotation, owner reference, data keys and status fields.
func (b *bench) floor(ctx context.Context, res *results) error {
	n := b.cfg.n
	conns := make([]*snowv1.ServiceNowConnection, n)
	if err := parallel(ctx, n, createWorkers, func(ctx context.Context, i int) error {
		c := connection(nsFloor, connName(i), credsName(i))
		conns[i] = c
		return b.c.Create(ctx, c)
	}); err != nil {
		return fmt.Errorf("creating the floor's connections: %w", err)
	}

	// The same client construction as the manager's: controller-runtime's
	// client with the rest.Config limits, which client-go applies per
	// resource (Secrets and connections each get their own token bucket).
	limited := rest.CopyConfig(b.admin)
	limited.QPS, limited.Burst = float32(b.cfg.qps), b.cfg.burst
	fc, err := client.New(limited, client.Options{Scheme: b.scheme})
	if err != nil {
		return err
	}
	token := randomSecret()
	started := time.Now()
	err = parallel(ctx, n, b.cfg.concurrency, func(ctx context.Context, i int) error {
		conn := conns[i]
		now := time.Now()
		expires := metav1.NewTime(now.Add(30 * time.Minute).Truncate(time.Second))
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: conn.Namespace, Name: conn.TokenSecretName(),
				Labels:      map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue, snowv1.LabelConnection: conn.Name},
				Annotations: map[string]string{"servicenow.snowauth.dev/token-sha256": sha256Hex(token)},
			},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{
				snowv1.TokenKeyAccessToken: []byte(token),
				snowv1.TokenKeyTokenType:   []byte("Bearer"),
				snowv1.TokenKeyExpiresAt:   []byte(expires.UTC().Format(time.RFC3339)),
				snowv1.TokenKeyInstanceURL: []byte(b.instanceURL),
			},
		}
		if err := controllerutil.SetControllerReference(conn, secret, b.scheme); err != nil {
			return err
		}
		if err := fc.Create(ctx, secret); err != nil {
			return err
		}
		base := conn.DeepCopy()
		st := &conn.Status
		st.ObservedGeneration = conn.Generation
		st.InstanceURL = b.instanceURL
		st.TokenSecretName = secret.Name
		st.ExpiresAt = &expires
		st.LastRefreshTime = &metav1.Time{Time: now.Truncate(time.Second)}
		st.NextRefreshTime = &metav1.Time{Time: now.Add(20 * time.Minute).Truncate(time.Second)}
		st.CredentialsResourceVersion = "1"
		st.Conditions = []metav1.Condition{{
			Type: snowv1.ConditionReady, Status: metav1.ConditionTrue, Reason: snowv1.ReasonTokenValid,
			Message:            fmt.Sprintf("Secret %s holds a token valid until %s", secret.Name, expires.UTC().Format(time.RFC3339)),
			ObservedGeneration: conn.Generation, LastTransitionTime: metav1.NewTime(now),
		}}
		return fc.Status().Patch(ctx, conn, client.MergeFrom(base))
	})
	took := time.Since(started)
	if err != nil {
		return fmt.Errorf("floor writes: %w", err)
	}
	res.Floor = &floorResult{Seconds: took.Seconds(), Writes: 2 * n, WritesPerSecond: float64(2*n) / took.Seconds()}
	logf("   floor: %d writes in %s", 2*n, took.Round(time.Millisecond))
	// The manager has not started: it will never see these.
	return b.deleteAll(ctx, nsFloor)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// firstManager builds and starts the manager on an empty cluster and, for
// the memory scenario, reads its memory with no connection at all.
func (b *bench) firstManager(ctx context.Context, res *results) error {
	if err := b.buildManager(ctx); err != nil {
		return fmt.Errorf("building the manager: %w", err)
	}
	res.Machine.Snowauth = buildRevision(ctx, b.managerBin())
	m, err := b.startManager(ctx)
	if err != nil {
		return err
	}
	b.mgr = m
	if b.cfg.scenarios["memory"] {
		if _, err := m.waitIdle(ctx, min(2*time.Second, b.cfg.settle), nil, 0, time.Minute); err != nil {
			return err
		}
		s, err := m.sampleMemory(ctx, b.cfg.settle)
		if err != nil {
			return err
		}
		res.memory().Empty = s
	}
	return nil
}

// coldStart creates the N credentials Secrets (untimed: a platform has them
// already), then the N connections as fast as the API server takes them, and
// times create→Ready.
func (b *bench) coldStart(ctx context.Context, res *results) error {
	n := b.cfg.n
	if err := parallel(ctx, n, createWorkers, func(ctx context.Context, i int) error {
		data := b.addClient(clientID(i), 0)
		return b.c.Create(ctx, credentialsSecret(nsMain, credsName(i), data))
	}); err != nil {
		return fmt.Errorf("creating credentials Secrets: %w", err)
	}
	// Let the manager absorb the Secret events first: they are not part
	// of a connection's create→Ready.
	before, err := b.mgr.waitIdle(ctx, time.Second, nil, 0, 2*time.Minute)
	if err != nil {
		return err
	}
	cpuBefore, err := b.mgr.cpu()
	if err != nil {
		return err
	}
	requestsBefore := len(b.sim.TokenRequestLog())
	stopProfile := b.startCPUProfile(ctx, "cpu-cold.pb.gz")
	b.goroutinesLater(ctx, 10*time.Second, "goroutines-cold.txt")

	keys := make([]types.NamespacedName, n)
	created := make([]time.Time, n)
	started := time.Now()
	if err := parallel(ctx, n, createWorkers, func(ctx context.Context, i int) error {
		c := connection(nsMain, connName(i), credsName(i))
		keys[i] = client.ObjectKeyFromObject(c)
		created[i] = time.Now()
		return b.c.Create(ctx, c)
	}); err != nil {
		return fmt.Errorf("creating connections: %w", err)
	}
	createTook := time.Since(started)
	var readyAt []time.Time
	err = poll(ctx, 100*time.Millisecond, max(5*time.Minute, time.Duration(n)*time.Second), "every connection to be Ready", func() (bool, error) {
		var ok bool
		readyAt, ok = b.watch.ready(keys)
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("%w (%d of %d Ready)", err, b.watch.readyCount(keys), n)
	}
	stopProfile()
	last := started
	lat := make([]float64, n)
	for i, t := range readyAt {
		lat[i] = t.Sub(created[i]).Seconds()
		if t.After(last) {
			last = t
		}
	}
	total := last.Sub(started)
	after, err := b.mgr.waitIdle(ctx, time.Second, before, 0, 2*time.Minute)
	if err != nil {
		return err
	}
	cpuAfter, err := b.mgr.cpu()
	if err != nil {
		return err
	}
	reqs := after.requests().minus(before.requests())
	cold := &coldResult{
		Seconds:             total.Seconds(),
		CreateSeconds:       createTook.Seconds(),
		LatencyP50:          percentile(lat, 50),
		LatencyP99:          percentile(lat, 99),
		LatencyMax:          percentile(lat, 100),
		TokenRequests:       len(b.sim.TokenRequestLog()) - requestsBefore,
		Requests:            reqs,
		WritesPerConnection: reqs.writes() / float64(n),
		ReadsPerConnection:  reqs.reads() / float64(n),
		Reconciles:          after.reconciles() - before.reconciles(),
		ReconcileErrors:     after.reconcileErrors() - before.reconcileErrors(),
		CPUSeconds:          (cpuAfter - cpuBefore).Seconds(),
		TokenLatencyBound:   float64(n) * b.cfg.simLatency.Seconds() / float64(b.cfg.concurrency),
	}
	if res.Floor != nil && res.Floor.Seconds > 0 {
		cold.FloorRatio = cold.Seconds / res.Floor.Seconds
	}
	if b.cfg.scenarios["cold"] {
		res.Cold = cold
	}
	logf("   %d connections Ready in %s (p50 %.2fs, p99 %.2fs)", n, total.Round(time.Millisecond), cold.LatencyP50, cold.LatencyP99)
	return nil
}

// startCPUProfile starts a CPU profile of the manager when -profile-dir is
// set; the returned function waits for it to be saved.
func (b *bench) startCPUProfile(ctx context.Context, file string) func() {
	if b.cfg.profileDir == "" {
		return func() {}
	}
	m := b.mgr
	done := make(chan struct{})
	go func() {
		defer close(done)
		// pprof needs the length up front: long enough for the phase
		// being profiled at N=1,000.
		if err := m.profile(ctx, b.cfg.profileDir, "profile?seconds=30", file); err != nil {
			logf("   CPU profile %s: %v", file, err)
		}
	}()
	return func() { <-done }
}

// goroutinesLater saves the manager's goroutine stacks after a delay when
// -profile-dir is set: what the workers wait on (rate limiters, the API
// server, ServiceNow) shows there and in no CPU profile.
func (b *bench) goroutinesLater(ctx context.Context, after time.Duration, file string) {
	if b.cfg.profileDir == "" {
		return
	}
	m := b.mgr
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(after):
		}
		if err := m.profile(ctx, b.cfg.profileDir, "goroutine?debug=1", file); err != nil {
			logf("   goroutine dump %s: %v", file, err)
		}
	}()
}
