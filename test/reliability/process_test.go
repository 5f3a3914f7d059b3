package reliability_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/testenv"
)

// The manager process helpers follow test/alerts' (copied, not imported:
// test packages do not import each other).

var (
	buildOnce  sync.Once
	managerBin string
	buildErr   error
)

// replica is one manager process, a real cmd/main.go binary.
type replica struct {
	name    string
	cmd     *exec.Cmd
	metrics string
	exited  chan struct{}
}

// startReplica builds the manager binary (once per test binary) and runs it
// as one replica electing a leader in namespace ns, watching only ns, until
// the test ends. It returns once the replica answers its readiness probe,
// as a leader or a standby.
func startReplica(t *testing.T, ns, name, caFile string) *replica {
	t.Helper()
	g := NewWithT(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "snowauth-reliability-")
		if err != nil {
			buildErr = err
			return
		}
		managerBin = filepath.Join(dir, "manager")
		cmd := exec.CommandContext(context.Background(), "go", "build", "-o", managerBin, "./cmd")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building the manager: %w\n%s", err, out)
		}
	})
	g.Expect(buildErr).NotTo(HaveOccurred())

	kubeconfig, err := env.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	dir := t.TempDir()
	g.Expect(os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600)).To(Succeed())
	metrics, probes := freePort(t), freePort(t)
	cmd := exec.CommandContext(context.Background(), managerBin, //nolint:gosec // the binary this test built
		"--kubeconfig="+filepath.Join(dir, "kubeconfig"),
		"--allowed-instance-domains=localhost",
		"--ca-bundle="+caFile,
		"--leader-elect", "--leader-election-namespace="+ns,
		"--watch-namespaces="+ns,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metrics), "--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probes),
	)
	logs, err := os.Create(filepath.Join(dir, "manager.log"))
	g.Expect(err).NotTo(HaveOccurred())
	cmd.Stdout, cmd.Stderr = logs, logs
	g.Expect(cmd.Start()).To(Succeed())
	r := &replica{name: name, cmd: cmd, metrics: fmt.Sprintf("127.0.0.1:%d", metrics), exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-r.exited
		_ = logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("%s logs:\n%s", name, b)
		}
	})
	g.Eventually(func() (int, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probes))
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}, eventually, interval).Should(Equal(http.StatusOK))
	return r
}

// kill ends the replica at once, as the kernel's OOM killer or a lost node
// would: no lease release, no request finished.
func (r *replica) kill() { _ = r.cmd.Process.Signal(syscall.SIGKILL) }

// terminate asks the replica to stop, as the kubelet does when a Pod is
// deleted.
func (r *replica) terminate() { _ = r.cmd.Process.Signal(syscall.SIGTERM) }

// hasExited says whether the process ended.
func (r *replica) hasExited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
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
	if r.hasExited() {
		return 0, fmt.Errorf("%s has exited", r.name)
	}
	resp, err := http.Get("http://" + r.metrics + "/metrics")
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

// freePort is a loopback TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// since is d rounded for a report.
func since(t0 time.Time) time.Duration { return time.Since(t0).Round(10 * time.Millisecond) }
