package controllers

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// Scheduling constants. They are deliberately not flags: they encode how
// ServiceNow behaves, not a site preference.
const (
	// retryBase and retryCap bound the exponential backoff after a transient
	// failure (instance unavailable, timeout, hibernating, bad response).
	retryBase = 5 * time.Second
	retryCap  = 5 * time.Minute

	// slowRetry is how often snowauth retries when a person must act first
	// (rejected credentials, a missing Secret key). A change to the
	// credentials Secret or the spec retries at once instead.
	slowRetry = 15 * time.Minute

	// minDelay keeps any computed delay from turning into a hot loop.
	minDelay = time.Second
)

// Jitter returns a random duration in [0, max). Production uses
// rand.N; tests pass a fixed function.
type Jitter func(max time.Duration) time.Duration

// refreshBefore is the connection's spec.refreshBefore, nil when unset.
func refreshBefore(conn *snowv1.ServiceNowConnection) *time.Duration {
	if rb := conn.Spec.RefreshBefore; rb != nil {
		return &rb.Duration
	}
	return nil
}

// refreshTime is when a token issued at issued and expiring at expiry should
// be refreshed: two thirds into its lifetime, or refreshBefore ahead of its
// expiry when set but not before half its lifetime, so a refreshBefore
// longer than a short token's life cannot make snowauth request tokens in a
// loop. Jitter of up to a tenth of the lifetime then only ever moves it
// earlier, which spreads thousands of connections created together and
// never risks a late refresh.
func refreshTime(issued, expiry time.Time, refreshBefore *time.Duration, jitter Jitter) time.Time {
	lifetime := expiry.Sub(issued)
	if lifetime <= 0 {
		return issued
	}
	at := issued.Add(lifetime * 2 / 3)
	if refreshBefore != nil {
		at = expiry.Add(-*refreshBefore)
	}
	if earliest := issued.Add(lifetime / 2); at.Before(earliest) {
		at = earliest
	}
	if spread := lifetime / 10; spread > 0 {
		at = at.Add(-jitter(spread))
	}
	return at
}

// retryDelay is how long to wait before the next token request after
// failures consecutive failures (1 for the first) of the given kind.
//
//   - a server's Retry-After wins (the ServiceNow client caps it at an
//     hour): asking earlier only prolongs a rate limit;
//   - failures a person must fix wait slowRetry;
//   - transient failures back off exponentially from retryBase to retryCap
//     with full jitter, and never wait more than half the time a still-valid
//     token has left, so retries keep closing in on its expiry.
func retryDelay(f *failure, failures int32, now time.Time, tokenExpiry *time.Time, jitter Jitter) time.Duration {
	if f.retryAfter > 0 {
		return f.retryAfter
	}
	if !f.retryable {
		return slowRetry
	}
	ceiling := retryCap
	if failures >= 1 && failures < 16 {
		ceiling = min(retryCap, retryBase<<(failures-1))
	}
	d := max(minDelay, jitter(ceiling+1))
	if tokenExpiry != nil {
		// At most half the time the token has left, so that a retry that
		// fails too leaves room for another before the token expires: the
		// retries close in on the expiry instead of landing just before it.
		if left := tokenExpiry.Sub(now); left > 0 && d > left/2 {
			d = max(minDelay, left/2)
		}
	}
	return d
}

// requeueAfter is how long controller-runtime should wait before looking at
// the connection again: at the next planned token request, or at the token's
// expiry if that comes first, so Ready turns False on time, or at any of
// also (renewing an authorization link, a refresh-token warning). Zero means
// no timed requeue (a watch brings the connection back).
func requeueAfter(now time.Time, next, expiry *time.Time, also ...time.Time) time.Duration {
	var d time.Duration
	if next != nil {
		// A planned request that is already due runs a moment later, not at
		// once, so a clock a little behind the API server's cannot spin.
		d = max(minDelay, next.Sub(now))
	}
	for _, t := range append([]time.Time{timeOrZero(expiry)}, also...) {
		if left := t.Sub(now); !t.IsZero() && left > 0 && (d == 0 || left < d) {
			d = left
		}
	}
	return d
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func (r *ServiceNowConnectionReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *ServiceNowConnectionReconciler) jitter() Jitter {
	if r.Jitter != nil {
		return r.Jitter
	}
	return randomJitter
}

// storedExpiry is when the token really in the token Secret expires, nil
// when it holds none of snowauth's.
func (s *scope) storedExpiry() *time.Time {
	if s.stored == nil {
		return nil
	}
	return &s.stored.expiry
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}
