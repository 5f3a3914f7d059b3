package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onsi/gomega"
)

// ManagerProcess is the manager binary (cmd/main.go, built once per test
// binary) running as a process against an Env, as a Pod runs it: with its
// own kubeconfig, metrics over plain HTTP on loopback and probes. Tests that
// need what only a process has (SIGKILL, leader election between replicas,
// the real /metrics endpoint) use it; the rest use StartManager.
type ManagerProcess struct {
	// Name labels the process's logs, printed when the test fails.
	Name string
	// MetricsAddr is host:port of its /metrics.
	MetricsAddr string

	cmd    *exec.Cmd
	exited chan struct{}
}

var (
	buildOnce  sync.Once
	managerBin string
	errBuild   error
)

// StartManagerProcess builds the manager (once) and runs it with args (the
// kubeconfig, metrics and probe flags are added) until the test ends,
// returning once it answers its readiness probe, as a leader or a standby.
func (e *Env) StartManagerProcess(t testing.TB, name string, args ...string) *ManagerProcess {
	t.Helper()
	g := gomega.NewWithT(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "snowauth-manager-")
		if err != nil {
			errBuild = err
			return
		}
		managerBin = filepath.Join(dir, "manager")
		cmd := exec.CommandContext(context.Background(), "go", "build", "-o", managerBin, "./cmd")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			errBuild = fmt.Errorf("building the manager: %w\n%s", err, out)
		}
	})
	g.Expect(errBuild).NotTo(gomega.HaveOccurred())

	kubeconfig, err := e.KubeConfig()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	dir := t.TempDir()
	g.Expect(os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600)).To(gomega.Succeed())
	metrics, probes := FreePort(t), FreePort(t)
	cmd := exec.CommandContext(context.Background(), managerBin, append([]string{ //nolint:gosec // the binary built above
		"--kubeconfig=" + filepath.Join(dir, "kubeconfig"),
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metrics), "--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probes),
	}, args...)...)
	logs, err := os.Create(filepath.Join(dir, "manager.log"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	cmd.Stdout, cmd.Stderr = logs, logs
	g.Expect(cmd.Start()).To(gomega.Succeed())
	p := &ManagerProcess{Name: name, MetricsAddr: fmt.Sprintf("127.0.0.1:%d", metrics), cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Terminate()
		<-p.exited
		_ = logs.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logs.Name())
			t.Logf("%s logs:\n%s", name, b)
		}
	})
	g.Eventually(func() (int, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probes)) //nolint:noctx // a probe
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}, 90*time.Second, 100*time.Millisecond).Should(gomega.Equal(http.StatusOK), "%s is ready", name)
	return p
}

// RemoveManagerBinary removes the binary StartManagerProcess built, if it
// did. Run calls it; a TestMain of its own calls it after m.Run.
func RemoveManagerBinary() {
	if managerBin != "" {
		_ = os.RemoveAll(filepath.Dir(managerBin))
	}
}

// Kill ends the process at once, as the OOM killer or a lost node would: no
// lease release, no request finished.
func (p *ManagerProcess) Kill() { _ = p.cmd.Process.Signal(syscall.SIGKILL) }

// Terminate asks the process to stop, as the kubelet does when a Pod is
// deleted.
func (p *ManagerProcess) Terminate() { _ = p.cmd.Process.Signal(syscall.SIGTERM) }

// Exited says whether the process has ended.
func (p *ManagerProcess) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// FreePort is a loopback TCP port nothing listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
