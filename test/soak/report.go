package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// report is what one soak observed.
type report struct {
	seed                          uint64
	connections, samples          int
	refreshes                     int
	faults                        map[simulator.FaultKind]int
	takeovers                     []time.Duration
	restarts, leaderless          []time.Duration
	selfExits                     int
	unobservable                  int
	requestsBefore, requestsAfter int
	issued                        int
	missing, blank, expired       int
	longestInvalid                time.Duration
}

// table renders the report as Markdown.
func (r *report) table(cfg *config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nsnowauth chaos soak: N = %d, %s of chaos, tokens living %s, seed %d\n\n", cfg.n, cfg.duration, cfg.lifespan, r.seed)
	fmt.Fprintln(&b, "| measure | value | goal |")
	fmt.Fprintln(&b, "| --- | --- | --- |")
	row := func(m, v, goal string) { fmt.Fprintf(&b, "| %s | %s | %s |\n", m, v, goal) }
	row("refreshes seen in token Secrets", fmt.Sprint(r.refreshes), "")
	var kinds []string
	total := 0
	for k, n := range r.faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	row("faults injected", fmt.Sprintf("%d (%s)", total, strings.Join(kinds, ", ")), "")
	row("leader kills (SIGKILL)", fmt.Sprint(len(r.takeovers)), "")
	if len(r.takeovers) > 0 {
		row("time to take over, median / max", fmt.Sprintf("%.1f s / %.1f s",
			percentile(r.takeovers, 0.5).Seconds(), percentile(r.takeovers, 1).Seconds()), "")
	}
	row("API server restarts", fmt.Sprint(len(r.restarts)), "")
	if len(r.restarts) > 0 {
		row("API server away, median / max", fmt.Sprintf("%.1f s / %.1f s",
			percentile(r.restarts, 0.5).Seconds(), percentile(r.restarts, 1).Seconds()), "")
		row("from the stop to a leader, median / max", fmt.Sprintf("%.1f s / %.1f s",
			percentile(r.leaderless, 0.5).Seconds(), percentile(r.leaderless, 1).Seconds()), "")
	}
	row("managers that exited on their own (Lease lost) and were started again", fmt.Sprint(r.selfExits), "")
	row("token Secrets seen missing, blank, expired", fmt.Sprintf("%d, %d, %d", r.missing, r.blank, r.expired), "0, 0, 0")
	row("longest time a connection held no valid token", r.longestInvalid.Round(100*time.Millisecond).String(), "0")
	requests := r.requestsAfter - r.requestsBefore
	if r.refreshes > 0 {
		row("token requests per refresh (all answers)", fmt.Sprintf("%.2f (%d requests)", float64(requests)/float64(r.refreshes), requests), "")
	}
	// Tokens issued but never seen stored: requests a failover or a retry
	// repeated.
	if failovers := len(r.takeovers) + r.selfExits; failovers > 0 {
		extra := max(r.issued-r.connections-r.refreshes, 0)
		row("tokens issued but not seen stored, per failover", fmt.Sprintf("%.2f (%d)", float64(extra)/float64(failovers), extra), "≤ 1")
	}
	row("Secret checks (and checks while the API server was away)", fmt.Sprintf("%d (%d)", r.samples, r.unobservable), "")
	return b.String()
}

// verdict fails the run when an application could have seen a bad token
// Secret.
func (r *report) verdict() error {
	if r.missing+r.blank+r.expired > 0 {
		return fmt.Errorf("invariants violated: %d missing, %d blank, %d expired token Secrets", r.missing, r.blank, r.expired)
	}
	return nil
}
