package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// watcher watches what applications and people see: when each connection
// first turns Ready, and the expires_at of every token Secret. It is the
// expired-token checker: any moment a token Secret holds a token past its
// expires_at is recorded, whether noticed on a change or by a scan every
// checkInterval.
type watcher struct {
	cache  cache.Cache
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	readyAt   map[types.NamespacedName]time.Time
	expiry    map[types.NamespacedName]time.Time
	expired   map[string]expiredObs // by Secret and expiry: one per expired token
	refreshes []refreshEvent
}

// checkInterval is how often every token Secret's expiry is compared with
// the clock.
const checkInterval = 200 * time.Millisecond

// expiredObs is a token Secret seen holding an expired token.
type expiredObs struct {
	Secret string    `json:"secret"`
	Expiry time.Time `json:"expiry"`
	SeenAt time.Time `json:"seenAt"`
}

// refreshEvent is a token Secret's expires_at changing: a refresh as an
// application sees it. left is how long the replaced token had to live.
type refreshEvent struct {
	key  types.NamespacedName
	at   time.Time
	left time.Duration
}

func startWatcher(ctx context.Context, cfg *rest.Config, scheme *k8sruntime.Scheme) (*watcher, error) {
	c, err := cache.New(cfg, cache.Options{
		Scheme:           scheme,
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			// Token Secrets only: the credentials and unrelated Secrets
			// are none of the checker's business.
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{snowv1.LabelManagedBy: snowv1.ManagedByValue})},
		},
	})
	if err != nil {
		return nil, err
	}
	w := &watcher{
		cache:   c,
		done:    make(chan struct{}),
		readyAt: map[types.NamespacedName]time.Time{},
		expiry:  map[types.NamespacedName]time.Time{},
		expired: map[string]expiredObs{},
	}
	conns, err := c.GetInformer(ctx, &snowv1.ServiceNowConnection{})
	if err != nil {
		return nil, err
	}
	if _, err := conns.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.onConnection(o) },
		UpdateFunc: func(_, o any) { w.onConnection(o) },
	}); err != nil {
		return nil, err
	}
	secrets, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return nil, err
	}
	if _, err := secrets.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.onSecret(o) },
		UpdateFunc: func(_, o any) { w.onSecret(o) },
		DeleteFunc: w.onSecretDeleted,
	}); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { _ = c.Start(runCtx) }()
	if !c.WaitForCacheSync(ctx) {
		cancel()
		return nil, errors.New("the watches did not sync")
	}
	go w.scan(runCtx)
	return w, nil
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

// onConnection records when a connection is first seen Ready.
func (w *watcher) onConnection(o any) {
	conn, ok := o.(*snowv1.ServiceNowConnection)
	if !ok || !meta.IsStatusConditionTrue(conn.Status.Conditions, snowv1.ConditionReady) {
		return
	}
	now := time.Now()
	key := client.ObjectKeyFromObject(conn)
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, seen := w.readyAt[key]; !seen {
		w.readyAt[key] = now
	}
}

// onSecret follows a token Secret's expires_at.
func (w *watcher) onSecret(o any) {
	s, ok := o.(*corev1.Secret)
	if !ok {
		return
	}
	exp, err := time.Parse(time.RFC3339, string(s.Data[snowv1.TokenKeyExpiresAt]))
	if err != nil {
		return
	}
	now := time.Now()
	key := client.ObjectKeyFromObject(s)
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.expiry[key]; ok && !old.Equal(exp) {
		w.refreshes = append(w.refreshes, refreshEvent{key: key, at: now, left: old.Sub(now)})
		if !old.After(now) {
			w.observeExpired(key, old, now)
		}
	}
	w.expiry[key] = exp
	if !exp.After(now) {
		w.observeExpired(key, exp, now)
	}
}

func (w *watcher) onSecretDeleted(o any) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if s, ok := o.(metav1.Object); ok {
		w.mu.Lock()
		delete(w.expiry, types.NamespacedName{Namespace: s.GetNamespace(), Name: s.GetName()})
		w.mu.Unlock()
	}
}

// observeExpired records an expired token once; w.mu must be held.
func (w *watcher) observeExpired(key types.NamespacedName, exp, now time.Time) {
	id := fmt.Sprintf("%s@%s", key, exp.Format(time.RFC3339))
	if _, seen := w.expired[id]; !seen {
		w.expired[id] = expiredObs{Secret: key.String(), Expiry: exp, SeenAt: now}
	}
}

// scan compares every token Secret's expiry with the clock.
func (w *watcher) scan(ctx context.Context) {
	defer close(w.done)
	t := time.NewTicker(checkInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.mu.Lock()
			for key, exp := range w.expiry {
				if !exp.After(now) {
					w.observeExpired(key, exp, now)
				}
			}
			w.mu.Unlock()
		}
	}
}

// ready returns when each of keys was first seen Ready; ok is false until
// all were.
func (w *watcher) ready(keys []types.NamespacedName) (at []time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at = make([]time.Time, len(keys))
	for i, k := range keys {
		t, seen := w.readyAt[k]
		if !seen {
			return nil, false
		}
		at[i] = t
	}
	return at, true
}

// readyCount counts how many of keys were seen Ready.
func (w *watcher) readyCount(keys []types.NamespacedName) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, k := range keys {
		if _, ok := w.readyAt[k]; ok {
			n++
		}
	}
	return n
}

// refreshesBetween returns the refreshes of namespace ns's token Secrets
// seen in [from, to).
func (w *watcher) refreshesBetween(ns string, from, to time.Time) []refreshEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []refreshEvent
	for _, r := range w.refreshes {
		if r.key.Namespace == ns && !r.at.Before(from) && r.at.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// expiredBetween returns the expired tokens first seen in [from, to).
func (w *watcher) expiredBetween(from, to time.Time) []expiredObs {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []expiredObs
	for _, e := range w.expired {
		if !e.SeenAt.Before(from) && e.SeenAt.Before(to) {
			out = append(out, e)
		}
	}
	return out
}
