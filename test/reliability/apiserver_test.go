package reliability_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/testenv"
)

// An API server restart (same etcd) goes unnoticed by applications: the
// leading manager keeps its lease, reconnects its watches, asks ServiceNow
// for nothing while the tokens are fresh and rewrites no Secret and no
// status; a refresh requested after the restart is seen and served.
//
// The lease here outlasts the restart. With production's timings
// (controller-runtime's defaults: a 10 s renew deadline; cmd/main.go has
// no flags for them) a leader gives up its lease, and the process exits,
// when the API server is unreachable for longer than that, which an
// envtest API server draining the manager's watches on SIGTERM is (about
// 12 s here): the Pod restarts and a replica takes over as in the
// leader-election tests.
func TestAnAPIServerRestartCostsNoTokenRequestAndChangesNoSecret(t *testing.T) {
	t.Parallel()
	// An API server of its own: restarting the shared one would disturb
	// the other tests' managers.
	own, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = own.Stop() })
	w := newWorld(t, own, 30*time.Minute)
	logs := &testenv.SyncBuffer{}
	own.StartManager(t, testenv.Manager{
		Namespaces: []string{w.ns},
		Tokens:     testenv.ClientFor(t, w.sim, 5*time.Second),
		Logs:       logs,
		Options: func(o *ctrl.Options) {
			// As cmd/main.go sets them, with a lease that outlasts
			// the restart: losing it would stop the manager and fail
			// the test.
			o.LeaderElection = true
			o.LeaderElectionID = "snowauth.servicenow.snowauth.dev"
			o.LeaderElectionNamespace = w.ns
			o.LeaderElectionReleaseOnCancel = true
			o.LeaseDuration, o.RenewDeadline = ptr.To(90*time.Second), ptr.To(60*time.Second)
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager logs:\n%s", logs)
		}
	})
	names := []string{"orders", "billing", "hr"}
	w.connect(names...)
	w.waitReady(names...)
	w.g.Expect(w.requestsOf(names)).To(HaveEach(1))
	before := map[string]snapshot{}
	for _, n := range names {
		before[n] = w.snapshot(n)
	}
	s := startSampler(t, own.Client, w.sim, time.Now, w.tokenSecretKeys(names)...)

	stopped := time.Now()
	var down time.Duration
	w.g.Expect(own.RestartAPIServer(func() {
		// Down for real: the sampler cannot read anything.
		w.g.Eventually(s.unobservableSamples, eventually, interval).Should(BeNumerically(">", 0))
		down = since(stopped)
	})).To(Succeed())
	back := time.Now()
	t.Logf("API server restart: stopped within %s, serving again %s after the stop began", down, since(stopped))

	// A refresh requested now is seen once the manager's watches are back.
	w.annotate("orders", snowv1.AnnotationRefreshRequestedAt, time.Now().UTC().Format(time.RFC3339))
	w.g.Eventually(func() int { return w.requests("orders") }, eventually, interval).Should(Equal(2))
	w.g.Eventually(func() string { return w.connection("orders").Status.LastHandledRefreshRequest }, eventually, interval).
		ShouldNot(BeEmpty())
	t.Logf("the manager served a refresh requested after the restart %s after the API server was back", since(back))

	w.g.Consistently(func() map[string]int { return w.requestsOf(names) }, 2*time.Second, interval).
		Should(Equal(map[string]int{"orders": 2, "billing": 1, "hr": 1}))
	for _, n := range []string{"billing", "hr"} {
		w.g.Expect(w.snapshot(n)).To(Equal(before[n]), "connection %s and its token Secret are untouched", n)
	}
	for _, n := range names {
		w.g.Expect(w.ready(n)()).To(Equal(readyTokenValid))
	}
	w.g.Expect(s.summary()).To(BeEmpty())
}

// snapshot is what an API server restart must not change.
type snapshot struct {
	SecretVersion, ConnectionVersion string
	Data                             map[string][]byte
	Status                           snowv1.ServiceNowConnectionStatus
}

func (w *world) snapshot(name string) snapshot {
	w.t.Helper()
	secret := &corev1.Secret{}
	w.g.Expect(w.env.Client.Get(context.Background(), w.tokenSecretKey(name), secret)).To(Succeed())
	conn := w.connection(name)
	return snapshot{SecretVersion: secret.ResourceVersion, ConnectionVersion: conn.ResourceVersion, Data: secret.Data, Status: conn.Status}
}
