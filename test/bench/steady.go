package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// annotationTouch is an annotation under snowauth's prefix that means
// nothing to it: setting it wakes every connection up (annotation changes
// pass the controller's predicate) with nothing to do, which is an idle
// reconcile. Annotations outside the prefix would wake nothing: the
// manager's cache drops them.
const annotationTouch = "servicenow.snowauth.dev/bench-touched-at"

// probePrefix starts the OAuth client IDs of latency probes, which the
// steady-state counts leave out.
const probePrefix = "bench-probe-"

// annotate sets an annotation on every connection of the main namespace.
func (b *bench) annotate(ctx context.Context, key, value string) error {
	return parallel(ctx, b.cfg.n, createWorkers, func(ctx context.Context, i int) error {
		c := connection(nsMain, connName(i), credsName(i))
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, key, value)
		return b.c.Patch(ctx, c, client.RawPatch(types.MergePatchType, patch))
	})
}

// idle touches every connection while all tokens are fresh and counts the
// manager's API requests per resulting reconcile: an idle reconcile should
// read what it must and write nothing.
func (b *bench) idle(ctx context.Context, res *results) error {
	before, err := b.mgr.waitIdle(ctx, time.Second, nil, 0, 5*time.Minute)
	if err != nil {
		return err
	}
	requestsBefore := len(b.sim.TokenRequestLog())
	if err := b.annotate(ctx, annotationTouch, time.Now().Format(time.RFC3339Nano)); err != nil {
		return err
	}
	after, err := b.mgr.waitIdle(ctx, time.Second, before, float64(b.cfg.n), 5*time.Minute)
	if err != nil {
		return err
	}
	reqs := after.requests().minus(before.requests())
	rec := after.reconciles() - before.reconciles()
	res.Idle = &idleResult{
		Reconciles:         rec,
		Requests:           reqs,
		WritesPerReconcile: reqs.writes() / rec,
		ReadsPerReconcile:  reqs.reads() / rec,
		TokenRequests:      len(b.sim.TokenRequestLog()) - requestsBefore,
	}
	logf("   %.0f idle reconciles: %.0f writes, %.0f reads", rec, reqs.writes(), reqs.reads())
	return nil
}

// steady shortens the simulator's token lifespan, forces one refresh on
// every connection so all tokens are short-lived, then watches the operator
// keep them fresh for -steady-duration; then, while the refreshes go on,
// creates the latency probes one at a time.
func (b *bench) steady(ctx context.Context, res *results) error {
	cfg := b.cfg
	lifespan := cfg.steadyLifespan
	b.sim.SetAccessTokenLifespan(lifespan)
	kick := time.Now()
	kickValue := kick.Format(time.RFC3339Nano)
	if err := b.annotate(ctx, snowv1.AnnotationRefreshRequestedAt, kickValue); err != nil {
		return err
	}
	err := poll(ctx, 250*time.Millisecond, max(5*time.Minute, time.Duration(cfg.n)*200*time.Millisecond), "every connection to get a short-lived token", func() (bool, error) {
		var list snowv1.ServiceNowConnectionList
		if err := b.watch.cache.List(ctx, &list, client.InNamespace(nsMain)); err != nil {
			return false, err
		}
		// Done: the refresh request handled, and a token that lives
		// a short lifespan (ServiceNow says lifespan less a second).
		done := 0
		for _, c := range list.Items {
			st := c.Status
			if st.LastHandledRefreshRequest == kickValue && st.ExpiresAt != nil && st.LastRefreshTime != nil &&
				st.ExpiresAt.Sub(st.LastRefreshTime.Time) <= lifespan+time.Second {
				done++
			}
		}
		return done == cfg.n, nil
	})
	if err != nil {
		return err
	}
	kickTook := time.Since(kick)
	logf("   every connection holds a %s token (%s)", lifespan, kickTook.Round(time.Millisecond))

	before, err := b.mgr.scrape(ctx)
	if err != nil {
		return err
	}
	cpuBefore, err := b.mgr.cpu()
	if err != nil {
		return err
	}
	t0 := time.Now()
	stopProfile := b.startCPUProfile(ctx, "cpu-steady.pb.gz")
	b.goroutinesLater(ctx, cfg.steadyDuration/2, "goroutines-steady.txt")

	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(cfg.steadyDuration):
	}
	t1 := time.Now()
	after, err := b.mgr.scrape(ctx)
	if err != nil {
		return err
	}
	cpuAfter, err := b.mgr.cpu()
	if err != nil {
		return err
	}
	rss, peak, err := b.mgr.memory()
	if err != nil {
		return err
	}
	stopProfile()

	if cfg.scenarios["steady"] {
		res.Steady = b.steadyFigures(t0, t1, before, after, cpuAfter-cpuBefore)
		res.Steady.KickSeconds = kickTook.Seconds()
		res.Steady.RSS, res.Steady.PeakRSS = rss, peak
		s := res.Steady
		logf("   %d refreshes, %d token requests (%.3f per refresh), %.2f writes per refresh, %d expired",
			s.Refreshes, s.TokenRequests, s.RequestsPerRefresh, s.WritesPerRefresh, s.ExpiredObservations)
	}
	if cfg.scenarios["latency"] {
		// After the steady window, not during it: a probe's own writes
		// would count as writes per refresh.
		var probes []float64
		for k := range cfg.probes {
			if k > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(cfg.probeInterval):
				}
			}
			lat, err := b.probe(ctx, k)
			if err != nil {
				return fmt.Errorf("latency probe: %w", err)
			}
			probes = append(probes, lat.Seconds())
		}
		res.Latency = &latencyResult{Seconds: probes, P50: percentile(probes, 50), Max: percentile(probes, 100)}
		logf("   apply→Ready under load: %s s", floats(probes))
	}
	return nil
}

// steadyFigures turns the window [t0, t1) into the steady-state figures.
func (b *bench) steadyFigures(t0, t1 time.Time, before, after metrics, cpu time.Duration) *steadyResult {
	lifespan := b.cfg.steadyLifespan
	s := &steadyResult{WindowSeconds: t1.Sub(t0).Seconds(), CPUSeconds: cpu.Seconds()}

	// Token requests from the simulator's log: every one in the window, and
	// those that came sooner after the same client's previous request than
	// any scheduled refresh can: each of those is a request too many. A
	// refresh is planned two thirds into the token's life (expires_in is the
	// lifespan less a second) less a jitter of up to a tenth, and status
	// truncates the expiry and the plan to whole seconds; 0.9 of that
	// earliest plan leaves room for clock and watch delays.
	life := (lifespan - time.Second).Seconds()
	soonest := time.Duration(0.9 * (life*(2.0/3-0.1) - 2) * float64(time.Second))
	last := map[string]time.Time{}
	perClient := map[string]int{}
	for _, r := range b.sim.TokenRequestLog() {
		if r.Time.Before(t1) && !r.Time.Before(t0) {
			if strings.HasPrefix(r.ClientID, "bench-") && !strings.HasPrefix(r.ClientID, probePrefix) {
				s.TokenRequests++
				perClient[r.ClientID]++
				if r.Status != 200 {
					s.FailedRequests++
				}
				if prev, ok := last[r.ClientID]; ok && r.Time.Sub(prev) < soonest {
					s.RedundantRequests++
				}
			}
		}
		last[r.ClientID] = r.Time
	}
	refreshes := b.watch.refreshesBetween(nsMain, t0, t1)
	s.Refreshes = len(refreshes)
	seen := map[types.NamespacedName]bool{}
	minLeft := lifespan
	for _, r := range refreshes {
		seen[r.key] = true
		minLeft = min(minLeft, r.left)
	}
	s.ConnectionsRefreshed = len(seen)
	s.MinLeftSeconds = minLeft.Seconds()
	if s.Refreshes > 0 {
		s.RequestsPerRefresh = float64(s.TokenRequests) / float64(s.Refreshes)
	}

	reqs := after.requests().minus(before.requests())
	s.Requests = reqs
	s.Reconciles = after.reconciles() - before.reconciles()
	s.ReconcileErrors = after.reconcileErrors() - before.reconcileErrors()
	if s.Refreshes > 0 {
		r := float64(s.Refreshes)
		s.WritesPerRefresh = reqs.writes() / r
		s.ReadsPerRefresh = reqs.reads() / r
		s.ReconcilesPerRefresh = s.Reconciles / r
		s.CPUMillisPerRefresh = cpu.Seconds() * 1000 / r
	}
	s.CPUPercent = 100 * cpu.Seconds() / t1.Sub(t0).Seconds()
	expired := b.watch.expiredBetween(t0, t1)
	sort.Slice(expired, func(i, j int) bool { return expired[i].SeenAt.Before(expired[j].SeenAt) })
	s.ExpiredObservations = len(expired)
	s.Expired = expired[:min(len(expired), 10)]
	return s
}

// probe creates one connection and times apply→Ready, then deletes it.
func (b *bench) probe(ctx context.Context, k int) (time.Duration, error) {
	id := fmt.Sprintf("%s%d", probePrefix, k)
	creds := credentialsSecret(nsProbe, fmt.Sprintf("probe-creds-%d", k), b.addClient(id, 0))
	if err := b.c.Create(ctx, creds); err != nil {
		return 0, err
	}
	conn := connection(nsProbe, fmt.Sprintf("probe-%d", k), creds.Name)
	key := client.ObjectKeyFromObject(conn)
	applied := time.Now()
	if err := b.c.Create(ctx, conn); err != nil {
		return 0, err
	}
	var readyAt []time.Time
	if err := poll(ctx, 10*time.Millisecond, 2*time.Minute, "a probe connection to be Ready", func() (bool, error) {
		var ok bool
		readyAt, ok = b.watch.ready([]types.NamespacedName{key})
		return ok, nil
	}); err != nil {
		return 0, err
	}
	lat := readyAt[0].Sub(applied)
	token := credentialsSecret(nsProbe, conn.TokenSecretName(), nil)
	return lat, b.deleteObjects(ctx, conn, token, creds)
}
