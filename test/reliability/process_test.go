package reliability_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/testenv"
)

// replica is one manager process, a real cmd/main.go binary.
type replica struct {
	*testenv.ManagerProcess
}

// startReplica runs the manager as one replica electing a leader in
// namespace ns, watching only ns, until the test ends. It returns once the
// replica answers its readiness probe, as a leader or a standby.
func startReplica(t *testing.T, ns, name, caFile string) *replica {
	t.Helper()
	return &replica{env.StartManagerProcess(t, name,
		"--allowed-instance-domains=localhost",
		"--ca-bundle="+caFile,
		"--leader-elect", "--leader-election-namespace="+ns,
		"--watch-namespaces="+ns,
	)}
}

// leads says whether the replica is the leader now, from its
// snowauth_leader metric.
func (r *replica) leads() bool {
	v, err := r.metric("snowauth_leader", "")
	return err == nil && v == 1
}

// reconciles is how many reconciles of connections the replica finished
// (controller-runtime's controller_runtime_reconcile_total, all results).
func (r *replica) reconciles() float64 {
	v, _ := r.metric("controller_runtime_reconcile_total", `controller="servicenowconnection"`)
	return v
}

// metric sums the samples of metric name on the replica's /metrics whose
// labels contain match (every sample when match is empty).
func (r *replica) metric(name, match string) (float64, error) {
	if r.Exited() {
		return 0, fmt.Errorf("%s has exited", r.Name)
	}
	resp, err := http.Get("http://" + r.MetricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // another metric whose name starts with name
		}
		if match != "" && !strings.Contains(rest, match) {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, sc.Err()
}

// leader waits until exactly one of replicas leads and returns it.
func leader(t *testing.T, replicas ...*replica) *replica {
	t.Helper()
	var found *replica
	NewWithT(t).Eventually(func() int {
		n := 0
		for _, r := range replicas {
			if r.leads() {
				n, found = n+1, r
			}
		}
		return n
	}, eventually, interval).Should(Equal(1), "exactly one replica leads")
	return found
}

// since is d rounded for a report.
func since(t0 time.Time) time.Duration { return time.Since(t0).Round(10 * time.Millisecond) }
