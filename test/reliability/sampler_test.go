package reliability_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// sampleEvery is how often the sampler reads each token Secret.
const sampleEvery = 50 * time.Millisecond

// sampler reads every token Secret of a test every 50 ms, as an
// application mounting it would, and records each moment it was missing,
// blank, or held an expired token while ServiceNow could issue tokens, and
// each time its expires_at went back. A token counts as expired when its
// expires_at has passed or when ServiceNow (the simulator) says so,
// whichever comes first.
type sampler struct {
	c    client.Client
	sim  *simulator.Simulator
	now  func() time.Time
	keys []client.ObjectKey

	// serviceNowDown, while set, excuses expired tokens: nothing can
	// refresh them.
	serviceNowDown atomic.Bool

	stop chan struct{}
	done chan struct{}

	mu sync.Mutex
	// violations holds the first of each kind per Secret, counts all.
	violations   map[string]int
	first        map[string]string
	samples      int
	unobservable int
	// refreshes counts the changes of each Secret's expires_at.
	refreshes map[client.ObjectKey]int
	lastSeen  map[client.ObjectKey]time.Time
}

// startSampler starts sampling the token Secrets keys, which must exist
// and hold valid tokens already, with now as the clock (ServiceNow's: the
// simulator's, or the wall clock). It stops when the test ends and fails the
// test for every violation it saw.
func startSampler(t *testing.T, c client.Client, sim *simulator.Simulator, now func() time.Time, keys ...client.ObjectKey) *sampler {
	t.Helper()
	s := &sampler{
		c: c, sim: sim, now: now, keys: keys, stop: make(chan struct{}), done: make(chan struct{}),
		violations: map[string]int{}, first: map[string]string{},
		refreshes: map[client.ObjectKey]int{}, lastSeen: map[client.ObjectKey]time.Time{},
	}
	go s.run()
	t.Cleanup(func() {
		s.halt()
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Logf("sampler: %d samples of %d token Secrets, %d unobservable (API server unreachable), refreshes seen %v",
			s.samples, len(s.keys), s.unobservable, s.refreshes)
		kinds := make([]string, 0, len(s.violations))
		for k := range s.violations {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			t.Errorf("sampler: %s: %d samples, the first: %s", k, s.violations[k], s.first[k])
		}
	})
	return s
}

func (s *sampler) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func (s *sampler) run() {
	defer close(s.done)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			for _, key := range s.keys {
				s.sample(key)
			}
		}
	}
}

func (s *sampler) sample(key client.ObjectKey) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	secret := &corev1.Secret{}
	err := s.c.Get(ctx, key, secret)
	now := s.now()
	down := s.serviceNowDown.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	switch {
	case apierrors.IsNotFound(err):
		s.violate(key, "missing", "at "+now.Format(time.RFC3339Nano))
		return
	case err != nil:
		// The API server is down or restarting: nobody can read the
		// Secret, which is not snowauth's doing.
		s.unobservable++
		return
	}
	token := string(secret.Data[snowv1.TokenKeyAccessToken])
	expiresAt := string(secret.Data[snowv1.TokenKeyExpiresAt])
	if token == "" {
		s.violate(key, "blank", fmt.Sprintf("at %s, resourceVersion %s", now.Format(time.RFC3339Nano), secret.ResourceVersion))
		return
	}
	expiry, perr := time.Parse(time.RFC3339, expiresAt)
	if perr != nil {
		s.violate(key, "unreadable expires_at", fmt.Sprintf("%q", expiresAt))
		return
	}
	if last, ok := s.lastSeen[key]; ok && !last.Equal(expiry) {
		s.refreshes[key]++
		if expiry.Before(last) {
			s.violate(key, "expires_at went back", fmt.Sprintf("from %s to %s", last.Format(time.RFC3339), expiresAt))
		}
	}
	s.lastSeen[key] = expiry
	if down {
		return
	}
	if !now.Before(expiry) {
		s.violate(key, "expired (expires_at)", fmt.Sprintf("expires_at %s, seen at %s", expiresAt, now.Format(time.RFC3339Nano)))
	}
	if real, ok := s.sim.TokenExpiry(token); ok && !now.Before(real) {
		s.violate(key, "expired at ServiceNow", fmt.Sprintf("ServiceNow's expiry %s, seen at %s", real.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano)))
	}
}

func (s *sampler) violate(key client.ObjectKey, kind, detail string) {
	k := key.Name + ": " + kind
	s.violations[k]++
	if _, ok := s.first[k]; !ok {
		s.first[k] = detail
	}
}

// summary says how many samples broke an invariant so far, for assertions
// in the middle of a test.
func (s *sampler) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for k, n := range s.violations {
		parts = append(parts, fmt.Sprintf("%s (%d samples, first: %s)", k, n, s.first[k]))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// unobservableSamples is how many reads failed so far.
func (s *sampler) unobservableSamples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unobservable
}
