package reliability_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// Another writer updating the token Secret and the connection all the time
// (an annotation on each, every 50 ms) makes snowauth's writes meet 409
// Conflicts, the writes storing new tokens included: controller-runtime
// retries them and the token obtained is stored from memory, so each
// refresh, requested or scheduled, costs ServiceNow exactly one request.
// snowauth never writes an older expires_at over a newer one (it did, for
// some milliseconds after each requested refresh, before the repair of a
// Secret confirmed the cached connection current), and applications never
// read a missing, blank or expired token.
func TestWritersRacingSnowauthCostNoSecondTokenRequestAndNeverPutAnOlderExpiryBack(t *testing.T) {
	t.Parallel()
	w := newWorld(t, env, 20*time.Second)
	writes := &writeLog{}
	logs := &testenv.SyncBuffer{}
	env.StartManager(t, testenv.Manager{
		Namespaces: []string{w.ns},
		Tokens:     testenv.ClientFor(t, w.sim, 5*time.Second),
		Logs:       logs,
		NewClient: func(cfg *rest.Config, opts client.Options) (client.Client, error) {
			c, err := client.New(cfg, opts)
			return &conflictCounter{Client: c, log: writes}, err
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager logs:\n%s", logs)
		}
	})
	const name = "orders"
	w.connect(name)
	w.waitReady(name)
	w.g.Expect(w.requests(name)).To(Equal(1))
	s := startSampler(t, w.env.Client, w.sim, time.Now, w.tokenSecretKey(name))

	// Every token request takes 300 ms, in which the other writer changes
	// the Secret at least five times: the write that stores the new token
	// cannot carry the resourceVersion snowauth read. Its 16 KiB
	// annotations keep the manager's cache a little behind.
	w.sim.SetFault(simulator.Fault{Kind: simulator.FaultLatency, Path: "/oauth_token.do", Latency: 300 * time.Millisecond})
	other := startOtherWriter(t, w, name, 16<<10)

	// Refreshes requested by a person, one after the other. ServiceNow
	// hands out the same token, extended: a longer lifespan each time
	// makes each expiry differ from the one before, even within a second,
	// so that storing it is a write.
	want := 1
	for i := range 5 {
		w.sim.SetAccessTokenLifespan(time.Duration(22+2*i) * time.Second)
		expiry := w.expiresAt(name)
		w.annotate(name, snowv1.AnnotationRefreshRequestedAt, "request-"+strconv.Itoa(i))
		w.g.Eventually(func() time.Time { return w.expiresAt(name) }, eventually, interval).Should(BeTemporally(">", expiry))
		want++
		w.g.Expect(w.requests(name)).To(Equal(want), "requested refresh %d", i)
	}
	w.g.Consistently(func() int { return w.requests(name) }, time.Second, interval).Should(Equal(want))

	// The refresh the schedule asks for, 14-20 s after the last one.
	expiry := w.expiresAt(name)
	w.g.Eventually(func() time.Time { return w.expiresAt(name) }, eventually, interval).Should(BeTemporally(">", expiry))
	want++
	w.g.Consistently(func() int { return w.requests(name) }, 2*time.Second, interval).Should(Equal(want))
	otherWrites := other.stop()

	secretConflicts, tokenConflicts, statusConflicts, secretWrites, wentBack := writes.counts()
	t.Logf("conflicts: %d on token Secret writes (%d of them storing a new token), %d on status writes; "+
		"snowauth wrote the Secret %d times while the other writer wrote %d times; %d token requests for %d refreshes",
		secretConflicts, tokenConflicts, statusConflicts, secretWrites, otherWrites, w.requests(name), want-1)
	w.g.Expect(tokenConflicts).To(BeNumerically(">=", 1), "a write storing a new token met a conflict")
	w.g.Expect(wentBack).To(BeEmpty(), "snowauth never writes an older expires_at over a newer one")

	// Once the other writer stops, the Secret says what status says.
	w.g.Eventually(func() string {
		secret, conn := w.tokenSecret(name), w.connection(name)
		if _, foreign := secret.Annotations[otherAnnotation]; foreign {
			return "the other writer's annotation is still there"
		}
		sum := sha256.Sum256(secret.Data[snowv1.TokenKeyAccessToken])
		if secret.Annotations["servicenow.snowauth.dev/token-sha256"] != hex.EncodeToString(sum[:]) {
			return "the token's fingerprint does not match"
		}
		if got, want := string(secret.Data[snowv1.TokenKeyExpiresAt]), conn.Status.ExpiresAt.UTC().Format(time.RFC3339); got != want {
			return "expires_at " + got + " is not status.expiresAt " + want
		}
		return ""
	}, eventually, interval).Should(BeEmpty())
	w.g.Expect(w.ready(name)()).To(Equal(readyTokenValid))
	w.g.Expect(w.requests(name)).To(Equal(want))
	w.g.Expect(s.summary()).To(BeEmpty())
}

// otherAnnotation is what the other writer sets on the token Secret.
const otherAnnotation = "example.com/scanned-at"

type otherWriter struct {
	done   chan struct{}
	wg     sync.WaitGroup
	writes atomic.Int64
}

// startOtherWriter updates connection name's token Secret and the
// connection itself (an annotation of size bytes each: nothing snowauth
// reads) every 50 ms, with Updates that carry the resourceVersion read just
// before, as a tool reconciling its own annotations would.
func startOtherWriter(t *testing.T, w *world, name string, size int) *otherWriter {
	o := &otherWriter{done: make(chan struct{})}
	padding := strings.Repeat("x", size)
	touch := func(obj client.Object, key client.ObjectKey, n int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := w.env.Client.Get(ctx, key, obj); err != nil {
			return
		}
		a := obj.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		a[otherAnnotation] = strconv.Itoa(n) + padding
		obj.SetAnnotations(a)
		if err := w.env.Client.Update(ctx, obj); err == nil {
			o.writes.Add(1)
		}
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-o.done:
				return
			case <-tick.C:
				touch(&corev1.Secret{}, w.tokenSecretKey(name), n)
				touch(&snowv1.ServiceNowConnection{}, client.ObjectKey{Namespace: w.ns, Name: name}, n)
			}
		}
	}()
	t.Cleanup(func() { o.stop() })
	return o
}

// stop stops the writer and returns how many writes it made.
func (o *otherWriter) stop() int64 {
	select {
	case <-o.done:
	default:
		close(o.done)
	}
	o.wg.Wait()
	return o.writes.Load()
}

// writeLog counts the manager's writes that met a conflict.
type writeLog struct {
	mu                                                       sync.Mutex
	secretConflicts, tokenConflicts, statusConflicts, writes int
	// stored is the token Secret's expires_at as last written.
	stored string
	// wentBack lists the writes that replaced expires_at with an earlier
	// one.
	wentBack []string
}

func (l *writeLog) counts() (secretConflicts, tokenConflicts, statusConflicts, secretWrites int, wentBack []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.secretConflicts, l.tokenConflicts, l.statusConflicts, l.writes, l.wentBack
}

// conflictCounter is the manager's client, counting the conflicts its
// writes meet; it changes nothing.
type conflictCounter struct {
	client.Client
	log *writeLog
}

func (c *conflictCounter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	err := c.Client.Create(ctx, obj, opts...)
	if s, ok := obj.(*corev1.Secret); ok && err == nil {
		c.log.mu.Lock()
		c.log.stored = string(s.Data[snowv1.TokenKeyExpiresAt])
		c.log.mu.Unlock()
	}
	return err
}

func (c *conflictCounter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	var expiresAt string
	if s, ok := obj.(*corev1.Secret); ok {
		expiresAt = string(s.Data[snowv1.TokenKeyExpiresAt])
	}
	err := c.Client.Update(ctx, obj, opts...)
	if _, ok := obj.(*corev1.Secret); ok {
		c.log.mu.Lock()
		switch {
		case apierrors.IsConflict(err):
			c.log.secretConflicts++
			if expiresAt != c.log.stored {
				c.log.tokenConflicts++
			}
		case err == nil:
			c.log.writes++
			if expiresAt < c.log.stored { // RFC 3339 in UTC: ordered as strings
				c.log.wentBack = append(c.log.wentBack, c.log.stored+" -> "+expiresAt)
			}
			c.log.stored = expiresAt
		}
		c.log.mu.Unlock()
	}
	return err
}

func (c *conflictCounter) Status() client.SubResourceWriter {
	return &statusConflictCounter{SubResourceWriter: c.Client.Status(), log: c.log}
}

type statusConflictCounter struct {
	client.SubResourceWriter
	log *writeLog
}

func (s *statusConflictCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	err := s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
	if apierrors.IsConflict(err) {
		s.log.mu.Lock()
		s.log.statusConflicts++
		s.log.mu.Unlock()
	}
	return err
}

func (s *statusConflictCounter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	err := s.SubResourceWriter.Update(ctx, obj, opts...)
	if apierrors.IsConflict(err) {
		s.log.mu.Lock()
		s.log.statusConflicts++
		s.log.mu.Unlock()
	}
	return err
}
