package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"
)

// results is everything one run measured; it is the JSON file.
type results struct {
	Command  string         `json:"command"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Machine  machineInfo    `json:"machine"`
	Params   params         `json:"params"`
	Floor    *floorResult   `json:"floor,omitempty"`
	Cold     *coldResult    `json:"coldStart,omitempty"`
	Restart  *restartResult `json:"restart,omitempty"`
	Memory   *memoryResult  `json:"memory,omitempty"`
	Idle     *idleResult    `json:"idleReconciles,omitempty"`
	Steady   *steadyResult  `json:"steadyState,omitempty"`
	Latency  *latencyResult `json:"latencyUnderLoad,omitempty"`
	Goals    []goal         `json:"goals"`
}

type machineInfo struct {
	Cores             int    `json:"cores"`
	GoVersion         string `json:"goVersion"`
	OSArch            string `json:"osArch"`
	Kubernetes        string `json:"kubernetes"`
	Etcd              string `json:"etcd"`
	ControllerRuntime string `json:"controllerRuntime"`
	ClientGo          string `json:"clientGo"`
	Snowauth          string `json:"snowauthRevision"`
	// LoadAverage is /proc/loadavg's 1-minute figure at the start and end:
	// on a shared machine it says how much else was running.
	LoadAverageStart string `json:"loadAverageStart"`
	LoadAverageEnd   string `json:"loadAverageEnd"`
}

type params struct {
	N                     int      `json:"n"`
	Scenarios             []string `json:"scenarios"`
	SimLatencySeconds     float64  `json:"simLatencySeconds"`
	Concurrency           int      `json:"maxConcurrentReconciles"`
	QPS                   float64  `json:"kubeAPIQPS"`
	Burst                 int      `json:"kubeAPIBurst"`
	ManagerArgs           []string `json:"managerArgs,omitempty"`
	RestartWindowSeconds  float64  `json:"restartWindowSeconds"`
	Unrelated             int      `json:"unrelatedSecrets"`
	UnrelatedBytes        int      `json:"unrelatedSecretBytes"`
	SteadyLifespanSeconds float64  `json:"steadyLifespanSeconds"`
	SteadyWindowSeconds   float64  `json:"steadyWindowSeconds"`
	Probes                int      `json:"probes"`
}

type floorResult struct {
	Seconds         float64 `json:"seconds"`
	Writes          int     `json:"writes"`
	WritesPerSecond float64 `json:"writesPerSecond"`
}

type coldResult struct {
	// Seconds runs from the first connection create to the last Ready.
	Seconds    float64 `json:"seconds"`
	FloorRatio float64 `json:"floorRatio"`
	// CreateSeconds is how long this program took to create the N
	// connections (the operator works meanwhile).
	CreateSeconds float64 `json:"createSeconds"`
	LatencyP50    float64 `json:"latencyP50Seconds"`
	LatencyP99    float64 `json:"latencyP99Seconds"`
	LatencyMax    float64 `json:"latencyMaxSeconds"`
	TokenRequests int     `json:"tokenRequests"`
	// TokenLatencyBound is N × the simulator latency / concurrency: the time
	// the token requests alone take, another floor.
	TokenLatencyBound   float64       `json:"tokenLatencyBoundSeconds"`
	Requests            requestCounts `json:"apiRequestsByMethod"`
	WritesPerConnection float64       `json:"writesPerConnection"`
	ReadsPerConnection  float64       `json:"readsPerConnection"`
	Reconciles          float64       `json:"reconciles"`
	ReconcileErrors     float64       `json:"reconcileErrors"`
	CPUSeconds          float64       `json:"managerCPUSeconds"`
}

type restartResult struct {
	ReadySeconds  float64 `json:"readySeconds"`
	SweepSeconds  float64 `json:"sweepSeconds"`
	WindowSeconds float64 `json:"windowSeconds"`
	// TokenRequests counts from the new process's start to the window's end.
	TokenRequests int           `json:"tokenRequests"`
	Reconciles    float64       `json:"reconciles"`
	Requests      requestCounts `json:"apiRequestsByMethod"`
	Writes        float64       `json:"writes"`
}

type memoryResult struct {
	// Empty, WithN and WithUnrelated are read from a freshly started,
	// settled manager; LiveWithUnrelated from the one running when the
	// unrelated Secrets were created.
	Empty               memSample `json:"empty"`
	WithN               memSample `json:"withN"`
	LiveWithUnrelated   memSample `json:"liveWithUnrelated"`
	WithUnrelated       memSample `json:"withUnrelated"`
	PeakRSS             uint64    `json:"peakRSSBytes"`
	UnrelatedReconciles float64   `json:"unrelatedReconciles"`
	RSSPerConnection    float64   `json:"rssPerConnectionBytes"`
	HeapPerConnection   float64   `json:"heapPerConnectionBytes"`
	UnrelatedRSSDiff    float64   `json:"unrelatedRSSDiffBytes"`
	UnrelatedHeapDiff   float64   `json:"unrelatedHeapDiffBytes"`
}

type idleResult struct {
	Reconciles         float64       `json:"reconciles"`
	Requests           requestCounts `json:"apiRequestsByMethod"`
	WritesPerReconcile float64       `json:"writesPerReconcile"`
	ReadsPerReconcile  float64       `json:"readsPerReconcile"`
	TokenRequests      int           `json:"tokenRequests"`
}

type steadyResult struct {
	WindowSeconds        float64       `json:"windowSeconds"`
	KickSeconds          float64       `json:"kickSeconds"`
	Refreshes            int           `json:"refreshes"`
	ConnectionsRefreshed int           `json:"connectionsRefreshed"`
	TokenRequests        int           `json:"tokenRequests"`
	FailedRequests       int           `json:"failedTokenRequests"`
	RedundantRequests    int           `json:"redundantTokenRequests"`
	RequestsPerRefresh   float64       `json:"tokenRequestsPerRefresh"`
	Requests             requestCounts `json:"apiRequestsByMethod"`
	WritesPerRefresh     float64       `json:"writesPerRefresh"`
	ReadsPerRefresh      float64       `json:"readsPerRefresh"`
	Reconciles           float64       `json:"reconciles"`
	ReconcileErrors      float64       `json:"reconcileErrors"`
	ReconcilesPerRefresh float64       `json:"reconcilesPerRefresh"`
	ExpiredObservations  int           `json:"expiredTokenObservations"`
	Expired              []expiredObs  `json:"expired,omitempty"`
	MinLeftSeconds       float64       `json:"minLifetimeLeftAtRefreshSeconds"`
	CPUSeconds           float64       `json:"managerCPUSeconds"`
	CPUPercent           float64       `json:"managerCPUPercentOfOneCore"`
	CPUMillisPerRefresh  float64       `json:"managerCPUMillisPerRefresh"`
	RSS                  uint64        `json:"rssBytes"`
	PeakRSS              uint64        `json:"peakRSSBytes"`
}

type latencyResult struct {
	Seconds []float64 `json:"seconds"`
	P50     float64   `json:"p50Seconds"`
	Max     float64   `json:"maxSeconds"`
}

// goal is one of issue 7's targets, with what this run measured.
type goal struct {
	Name     string  `json:"name"`
	Target   string  `json:"target"`
	Value    float64 `json:"value"`
	Measured string  `json:"measured"`
	Met      bool    `json:"met"`
}

func newResults(cfg *config) *results {
	r := &results{Command: cfg.command, Started: time.Now()}
	r.Machine = machineInfo{
		Cores:            runtime.NumCPU(),
		GoVersion:        runtime.Version(),
		OSArch:           runtime.GOOS + "/" + runtime.GOARCH,
		LoadAverageStart: loadAverage(),
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			switch d.Path {
			case "sigs.k8s.io/controller-runtime":
				r.Machine.ControllerRuntime = d.Version
			case "k8s.io/client-go":
				r.Machine.ClientGo = d.Version
			}
		}
	}
	var scenarios []string
	for _, s := range scenarioNames {
		if cfg.scenarios[s] {
			scenarios = append(scenarios, s)
		}
	}
	r.Params = params{
		N: cfg.n, Scenarios: scenarios, SimLatencySeconds: cfg.simLatency.Seconds(),
		Concurrency: cfg.concurrency, QPS: cfg.qps, Burst: cfg.burst, ManagerArgs: cfg.managerArgs,
		RestartWindowSeconds: cfg.restartWindow.Seconds(), Unrelated: cfg.unrelated, UnrelatedBytes: cfg.unrelatedSize,
		SteadyLifespanSeconds: cfg.steadyLifespan.Seconds(), SteadyWindowSeconds: cfg.steadyDuration.Seconds(),
		Probes: cfg.probes,
	}
	return r
}

func (r *results) memory() *memoryResult {
	if r.Memory == nil {
		r.Memory = &memoryResult{}
	}
	return r.Memory
}

// finish derives the figures that combine several readings and checks them
// against the goals.
func (r *results) finish(b *bench) {
	r.Finished = time.Now()
	r.Machine.LoadAverageEnd = loadAverage()
	if m := r.Memory; m != nil && m.WithN.RSS > 0 {
		n := float64(b.cfg.n)
		m.RSSPerConnection = (float64(m.WithN.RSS) - float64(m.Empty.RSS)) / n
		m.HeapPerConnection = (float64(m.WithN.HeapAlloc) - float64(m.Empty.HeapAlloc)) / n
		if m.WithUnrelated.RSS > 0 {
			m.UnrelatedRSSDiff = float64(m.WithUnrelated.RSS) - float64(m.WithN.RSS)
			m.UnrelatedHeapDiff = float64(m.WithUnrelated.HeapAlloc) - float64(m.WithN.HeapAlloc)
		}
	}
	r.Goals = nil
	add := func(name, target string, value float64, measured string, met bool) {
		r.Goals = append(r.Goals, goal{Name: name, Target: target, Value: value, Measured: measured, Met: met})
	}
	if c := r.Cold; c != nil && c.FloorRatio > 0 {
		add("cold start / floor", "≤ 1.2× at N = 1,000", c.FloorRatio,
			fmt.Sprintf("%.2f× (%.1f s / %.1f s)", c.FloorRatio, c.Seconds, r.Floor.Seconds), c.FloorRatio <= 1.2)
	}
	if s := r.Steady; s != nil && s.Refreshes > 0 {
		add("token requests per refresh", "exactly 1", s.RequestsPerRefresh,
			fmt.Sprintf("%.3f (%d requests, %d refreshes, %d redundant, %d failed)",
				s.RequestsPerRefresh, s.TokenRequests, s.Refreshes, s.RedundantRequests, s.FailedRequests),
			s.RedundantRequests == 0 && s.FailedRequests == 0 && math.Abs(s.RequestsPerRefresh-1) <= 0.02)
		add("API writes per refresh", "≤ 2", s.WritesPerRefresh, fmt.Sprintf("%.2f", s.WritesPerRefresh), s.WritesPerRefresh <= 2.0)
	}
	if i := r.Idle; i != nil && i.Reconciles > 0 {
		add("API writes per idle reconcile", "0", i.WritesPerReconcile,
			fmt.Sprintf("%.2f (%.0f writes in %.0f reconciles)", i.WritesPerReconcile, i.Requests.writes(), i.Reconciles),
			i.Requests.writes() == 0)
	}
	if s := r.Steady; s != nil {
		add("expired-token observations", "0", float64(s.ExpiredObservations),
			fmt.Sprintf("%d (least lifetime left at a refresh: %.1f s)", s.ExpiredObservations, s.MinLeftSeconds), s.ExpiredObservations == 0)
	}
	if m := r.Memory; m != nil && m.WithUnrelated.RSS > 0 {
		add(fmt.Sprintf("RSS difference, %d unrelated Secrets", b.cfg.unrelated), "≤ 5 MiB", m.UnrelatedRSSDiff,
			fmt.Sprintf("%+.1f MiB (live heap %+.1f MiB)", m.UnrelatedRSSDiff/(1<<20), m.UnrelatedHeapDiff/(1<<20)), m.UnrelatedRSSDiff <= 5<<20)
	}
	if m := r.Memory; m != nil && m.WithN.RSS > 0 {
		add("RSS per connection", "≤ 20 KiB", m.RSSPerConnection,
			fmt.Sprintf("%.1f KiB (live heap %.1f KiB)", m.RSSPerConnection/1024, m.HeapPerConnection/1024), m.RSSPerConnection <= 20<<10)
	}
	if rs := r.Restart; rs != nil {
		add("token requests after a restart", "0", float64(rs.TokenRequests),
			fmt.Sprintf("%d in the first %.0f s after ready", rs.TokenRequests, rs.WindowSeconds), rs.TokenRequests == 0)
	}
	if l := r.Latency; l != nil && len(l.Seconds) > 0 {
		add("apply → Ready under load", "≤ 1 s", l.Max, fmt.Sprintf("max %.2f s, p50 %.2f s (%d probes)", l.Max, l.P50, len(l.Seconds)), l.Max <= 1)
	}
}

// markdown renders the figures as two tables: the goals, then every figure.
func (r *results) markdown() string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format+"\n", args...) }
	m := r.Machine
	p("snowauth benchmark: N = %d, %d cores, %s, Kubernetes %s, etcd %s, controller-runtime %s, snowauth %s",
		r.Params.N, m.Cores, m.GoVersion, m.Kubernetes, m.Etcd, m.ControllerRuntime, m.Snowauth)
	p("load average %s at start, %s at end; simulator latency %s; --max-concurrent-reconciles=%d --kube-api-qps=%g --kube-api-burst=%d %s",
		m.LoadAverageStart, m.LoadAverageEnd, secs(r.Params.SimLatencySeconds), r.Params.Concurrency, r.Params.QPS, r.Params.Burst,
		strings.Join(r.Params.ManagerArgs, " "))
	p("")
	p("| goal | target | measured | met |")
	p("| --- | --- | --- | --- |")
	for _, g := range r.Goals {
		met := "yes"
		if !g.Met {
			met = "**no**"
		}
		p("| %s | %s | %s | %s |", g.Name, g.Target, g.Measured, met)
	}
	p("")
	p("| scenario | figure | value |")
	p("| --- | --- | --- |")
	row := func(s, f, v string, args ...any) { p("| %s | %s | %s |", s, f, fmt.Sprintf(v, args...)) }
	if f := r.Floor; f != nil {
		row("floor", "N token Secret creates + N status patches", "%.1f s (%.0f writes/s)", f.Seconds, f.WritesPerSecond)
	}
	if c := r.Cold; c != nil {
		row("cold start", "first create → all Ready", "%.1f s (%.2f× floor)", c.Seconds, c.FloorRatio)
		row("cold start", "creating the N connections took", "%.1f s", c.CreateSeconds)
		row("cold start", "create → Ready p50 / p99 / max", "%.2f / %.2f / %.2f s", c.LatencyP50, c.LatencyP99, c.LatencyMax)
		row("cold start", fmt.Sprintf("token requests (N = %d)", r.Params.N), "%d", c.TokenRequests)
		row("cold start", "token latency bound (N × latency / concurrency)", "%.1f s", c.TokenLatencyBound)
		row("cold start", "API writes / reads per connection", "%.2f / %.2f (%s)", c.WritesPerConnection, c.ReadsPerConnection, c.Requests)
		row("cold start", "reconciles (errors)", "%.0f (%.0f)", c.Reconciles, c.ReconcileErrors)
		row("cold start", "manager CPU", "%.1f s", c.CPUSeconds)
	}
	if rs := r.Restart; rs != nil {
		row("restart", "start → ready / start → startup sweep done", "%.2f s / %.2f s", rs.ReadySeconds, rs.SweepSeconds)
		row("restart", fmt.Sprintf("token requests in the first %.0f s after ready", rs.WindowSeconds), "%d", rs.TokenRequests)
		row("restart", "reconciles / API writes", "%.0f / %.0f (%s)", rs.Reconciles, rs.Writes, rs.Requests)
	}
	if mem := r.Memory; mem != nil {
		row("memory", "RSS, fresh manager, 0 connections", "%s (live heap %s)", mib(mem.Empty.RSS), mib(mem.Empty.HeapAlloc))
		row("memory", "RSS, fresh manager, N connections", "%s (live heap %s)", mib(mem.WithN.RSS), mib(mem.WithN.HeapAlloc))
		row("memory", "RSS per connection", "%.1f KiB (live heap %.1f KiB)", mem.RSSPerConnection/1024, mem.HeapPerConnection/1024)
		if mem.WithUnrelated.RSS > 0 {
			row("memory", fmt.Sprintf("RSS, running manager, + %d unrelated Secrets", r.Params.Unrelated), "%s (live heap %s; %.0f reconciles caused)",
				mib(mem.LiveWithUnrelated.RSS), mib(mem.LiveWithUnrelated.HeapAlloc), mem.UnrelatedReconciles)
			row("memory", fmt.Sprintf("RSS, fresh manager, + %d unrelated Secrets", r.Params.Unrelated), "%s (live heap %s)",
				mib(mem.WithUnrelated.RSS), mib(mem.WithUnrelated.HeapAlloc))
			row("memory", "RSS difference from the unrelated Secrets", "%+.1f MiB (live heap %+.1f MiB)",
				mem.UnrelatedRSSDiff/(1<<20), mem.UnrelatedHeapDiff/(1<<20))
		}
	}
	if i := r.Idle; i != nil {
		row("idle reconciles", "API writes / reads per idle reconcile", "%.2f / %.2f (%.0f reconciles; %s)",
			i.WritesPerReconcile, i.ReadsPerReconcile, i.Reconciles, i.Requests)
		row("idle reconciles", "token requests", "%d", i.TokenRequests)
	}
	if s := r.Steady; s != nil {
		row("steady state", "window / token lifespan", "%.0f s / %.0f s (forcing short tokens took %.1f s)",
			s.WindowSeconds, r.Params.SteadyLifespanSeconds, s.KickSeconds)
		row("steady state", "refreshes (connections refreshed)", "%d (%d)", s.Refreshes, s.ConnectionsRefreshed)
		row("steady state", "token requests per refresh", "%.3f (%d requests, %d redundant, %d failed)",
			s.RequestsPerRefresh, s.TokenRequests, s.RedundantRequests, s.FailedRequests)
		row("steady state", "API writes / reads per refresh", "%.2f / %.2f (%s)", s.WritesPerRefresh, s.ReadsPerRefresh, s.Requests)
		row("steady state", "reconciles per refresh (errors)", "%.2f (%.0f)", s.ReconcilesPerRefresh, s.ReconcileErrors)
		row("steady state", "expired-token observations", "%d", s.ExpiredObservations)
		row("steady state", "least lifetime left when a token was replaced", "%.1f s", s.MinLeftSeconds)
		row("steady state", "manager CPU", "%.1f%% of a core, %.1f ms per refresh", s.CPUPercent, s.CPUMillisPerRefresh)
		row("steady state", "manager RSS (peak)", "%s (%s)", mib(s.RSS), mib(s.PeakRSS))
	}
	if l := r.Latency; l != nil {
		row("latency under load", "apply → Ready p50 / max", "%.2f / %.2f s (%s)", l.P50, l.Max, floats(l.Seconds))
	}
	return sb.String()
}

// String renders request counts as "GET 12, PATCH 3".
func (r requestCounts) String() string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, r[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func floats(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, ", ")
}

func secs(s float64) string { return (time.Duration(s * float64(time.Second))).String() }

// writeResults writes the JSON file and the markdown beside it, and prints
// the markdown.
func writeResults(cfg *config, r *results) error {
	out := cfg.out
	if !filepath.IsAbs(out) {
		if root, err := repoRoot(); err == nil {
			out = filepath.Join(root, out)
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := r.markdown()
	if err := os.WriteFile(strings.TrimSuffix(out, filepath.Ext(out))+".md", []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	logf("results: %s", out)
	return nil
}

// sane checks, for -smoke, that the harness measured what it should have:
// not whether snowauth met its goals, only that the numbers exist and are
// plausible, so that a broken harness fails `make test`.
func (r *results) sane(cfg *config) error {
	var problems []string
	check := func(ok bool, problem string) {
		if !ok {
			problems = append(problems, problem)
		}
	}
	sc := cfg.scenarios
	if sc["cold"] {
		check(r.Floor != nil && r.Floor.Seconds > 0, "no floor time")
		check(r.Cold != nil && r.Cold.Seconds > 0 && r.Cold.FloorRatio > 0, "no cold start time")
		check(r.Cold != nil && r.Cold.TokenRequests >= cfg.n, "cold start: fewer token requests than connections")
		check(r.Cold != nil && r.Cold.Requests.writes() >= float64(2*cfg.n), "cold start: the manager's writes were not counted")
	}
	if sc["restart"] {
		check(r.Restart != nil && r.Restart.Reconciles >= float64(cfg.n), "restart: no startup sweep counted")
	}
	if sc["memory"] {
		check(r.Memory != nil && r.Memory.Empty.RSS > 0 && r.Memory.WithN.RSS > 0 && r.Memory.WithUnrelated.RSS > 0,
			"memory: missing RSS readings")
	}
	if sc["steady"] {
		check(r.Idle != nil && r.Idle.Reconciles >= float64(cfg.n), "idle: no reconciles counted")
		check(r.Steady != nil && r.Steady.Refreshes > 0 && r.Steady.TokenRequests > 0, "steady: no refreshes counted")
	}
	if sc["latency"] && cfg.probes > 0 {
		check(r.Latency != nil && len(r.Latency.Seconds) == cfg.probes, "latency: probes missing")
	}
	check(len(r.Goals) > 0, "no goal evaluated")
	if len(problems) > 0 {
		return errors.New("smoke: the harness did not measure what it should: " + strings.Join(problems, "; "))
	}
	return nil
}

// percentile is the nearest-rank percentile of v (100: the maximum).
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
