package memory_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

const (
	lookAlikeSize  = 1 << 20
	annotationSize = 200 << 10
	// first and more are the look-alike Secrets of the two rounds; each
	// round adds half as many connections with a large annotation.
	first, more = 8, 24
	// heapBudget is what the live heap may grow by from the first round
	// to the second, which adds 24 MiB of look-alikes and 12 × 200 KiB of
	// annotations: the objects' names and snowauth's labels, and the
	// garbage collector's noise. (The first round costs about 3.5 MiB
	// whatever its size: client-go's decoders keep buffers the size of the
	// largest object seen.)
	heapBudget = 1 << 20
)

// Tenants cannot grow the manager's memory: Secrets of 1 MiB labelled as
// snowauth's (look-alikes: no connection controls them) and connections
// each carrying a 200 KiB annotation do not make the live heap grow with
// their number, while the manager still reports a look-alike in a token
// Secret's place as a conflict and serves the annotated connections.
func TestTenantsCannotGrowTheManagersMemoryWithLookAlikeSecretsOrLargeAnnotations(t *testing.T) {
	g := NewWithT(t)
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	env, err := testenv.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	ns := env.Namespace(t)

	sim, err := simulator.Start(simulator.Options{AccessTokenLifespan: 30 * time.Minute, ClientCredentialsEnabled: true})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(sim.Close)
	sim.AddUser(simulator.User{Username: "svc.memory", Password: "unused"})
	sim.AddClient(simulator.OAuthClient{ID: "memory-client", Secret: "memory-secret", ApplicationUser: "svc.memory"})
	g.Expect(env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "credentials"},
		StringData: map[string]string{
			snowv1.CredentialsKeyInstance: sim.LocalhostURL(), snowv1.CredentialsKeyClientID: "memory-client",
			snowv1.CredentialsKeyClientSecret: "memory-secret",
		},
	})).To(Succeed())
	mgr, _ := env.StartManager(t, testenv.Manager{Tokens: testenv.ClientFor(t, sim, 5*time.Second)})
	connect := func(name string, annotations map[string]string) {
		g.Expect(env.Client.Create(ctx, &snowv1.ServiceNowConnection{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
			Spec: snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantClientCredentials,
				CredentialsSecretRef: snowv1.SecretReference{Name: "credentials"}},
		})).To(Succeed())
	}
	ready := func(name, reason string) {
		g.Eventually(func() (string, error) {
			conn := &snowv1.ServiceNowConnection{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, conn); err != nil {
				return "", err
			}
			if r := meta.FindStatusCondition(conn.Status.Conditions, snowv1.ConditionReady); r != nil {
				return r.Reason, nil
			}
			return "", nil
		}, time.Minute, 50*time.Millisecond).Should(Equal(reason), "connection %s", name)
	}
	// The look-alike in billing's token Secret's place, then connection
	// billing: a conflict.
	lookAlike := func(name string) {
		g.Expect(env.Client.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
				snowv1.LabelManagedBy: snowv1.ManagedByValue, snowv1.LabelConnection: "look-alike",
			}, Annotations: map[string]string{"example.com/padding": strings.Repeat("y", annotationSize)}},
			Data: map[string][]byte{"blob": bytes.Repeat([]byte("x"), lookAlikeSize)},
		})).To(Succeed())
	}
	lookAlike("billing-token")
	connect("billing", nil)
	ready("billing", snowv1.ReasonSecretConflict)

	// Two rounds of tenant objects; the manager has seen every object
	// (its cache lists them) and acted on the connections.
	secrets, annotated := 1, 0
	round := func(lookAlikes int) int64 {
		for range lookAlikes {
			lookAlike(fmt.Sprintf("look-alike-%02d", secrets))
			secrets++
		}
		for range lookAlikes / 2 {
			connect(fmt.Sprintf("annotated-%02d", annotated), map[string]string{"example.com/padding": strings.Repeat("z", annotationSize)})
			annotated++
		}
		g.Eventually(func() int {
			var list corev1.SecretList
			g.Expect(mgr.GetCache().List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			return len(list.Items)
		}, time.Minute, 50*time.Millisecond).Should(Equal(secrets + annotated)) // look-alikes and token Secrets
		for i := range annotated {
			ready(fmt.Sprintf("annotated-%02d", i), snowv1.ReasonTokenValid)
		}
		var conns snowv1.ServiceNowConnectionList
		g.Expect(mgr.GetCache().List(ctx, &conns, client.InNamespace(ns))).To(Succeed())
		g.Expect(conns.Items).To(HaveLen(annotated + 1))
		return liveHeap()
	}
	base := liveHeap()
	afterFirst := round(first)
	afterMore := round(more)
	t.Logf("live heap: %.1f MiB; %.1f MiB after %d look-alike Secrets of 1 MiB and %d connections with a 200 KiB annotation; "+
		"%.1f MiB after %d and %d more (%+.2f MiB)", mib(base), mib(afterFirst), first+1, first/2, mib(afterMore), more, more/2,
		mib(afterMore)-mib(afterFirst))
	g.Expect(afterMore-afterFirst).To(BeNumerically("<", heapBudget),
		"the manager's live heap grew by %.1f MiB", mib(afterMore)-mib(afterFirst))
	ready("billing", snowv1.ReasonSecretConflict)
}

// liveHeap is the heap still in use after a full collection.
func liveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
