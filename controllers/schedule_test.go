package controllers

import (
	"math"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// t0 is the fixed "now" of the scheduling and status tests.
var t0 = time.Date(2030, time.January, 1, 12, 0, 0, 0, time.UTC)

// noJitter is a Jitter that never moves anything: the smallest value a random
// jitter can return.
func noJitter(time.Duration) time.Duration { return 0 }

// fullJitter is a Jitter returning the largest value a random jitter can
// return, max-1ns.
func fullJitter(max time.Duration) time.Duration { return max - 1 }

func durationPtr(d time.Duration) *time.Duration { return &d }

func timePtr(t time.Time) *time.Time { return &t }

func TestRefreshTime(t *testing.T) {
	// ServiceNow's default access token lives 30 minutes.
	const lifetime = 30 * time.Minute
	expiry := t0.Add(lifetime)

	for _, tc := range []struct {
		name          string
		expiry        time.Time
		refreshBefore *time.Duration
		jitter        Jitter
		want          time.Time
	}{
		{
			name:   "refreshes two thirds into the token's lifetime by default",
			expiry: expiry, jitter: noJitter,
			want: t0.Add(20 * time.Minute),
		},
		{
			name:   "refreshes refreshBefore ahead of the expiry when it is set",
			expiry: expiry, refreshBefore: durationPtr(5 * time.Minute), jitter: noJitter,
			want: t0.Add(25 * time.Minute),
		},
		{
			name:   "honours a refreshBefore of exactly half the lifetime",
			expiry: expiry, refreshBefore: durationPtr(15 * time.Minute), jitter: noJitter,
			want: t0.Add(15 * time.Minute),
		},
		{
			name:   "never refreshes earlier than half the lifetime when refreshBefore is longer than that",
			expiry: expiry, refreshBefore: durationPtr(20 * time.Minute), jitter: noJitter,
			want: t0.Add(15 * time.Minute),
		},
		{
			name:   "does not request tokens in a loop when refreshBefore is longer than the whole token's life",
			expiry: expiry, refreshBefore: durationPtr(24 * time.Hour), jitter: noJitter,
			want: t0.Add(15 * time.Minute),
		},
		{
			name:   "moves the default refresh earlier by at most a tenth of the lifetime with the largest jitter",
			expiry: expiry, jitter: fullJitter,
			want: t0.Add(20*time.Minute - 3*time.Minute + time.Nanosecond),
		},
		{
			name:   "moves a refreshBefore refresh earlier by at most a tenth of the lifetime with the largest jitter",
			expiry: expiry, refreshBefore: durationPtr(5 * time.Minute), jitter: fullJitter,
			want: t0.Add(25*time.Minute - 3*time.Minute + time.Nanosecond),
		},
		{
			// Jitter applies after the clamp, so clamped connections still
			// spread out (12m of a 30m token here at most).
			name:   "jitter can move a refresh clamped to half the lifetime a little before the half",
			expiry: expiry, refreshBefore: durationPtr(24 * time.Hour), jitter: fullJitter,
			want: t0.Add(15*time.Minute - 3*time.Minute + time.Nanosecond),
		},
		{
			name:   "does not jitter a lifetime too short to spread",
			expiry: t0.Add(9 * time.Nanosecond),
			jitter: func(time.Duration) time.Duration { panic("jitter must not be called") },
			want:   t0.Add(6 * time.Nanosecond),
		},
		{
			name:   "refreshes at once a token that expires when it is issued",
			expiry: t0, refreshBefore: durationPtr(5 * time.Minute), jitter: fullJitter,
			want: t0,
		},
		{
			name:   "refreshes at once a token that expired before it was issued",
			expiry: t0.Add(-time.Hour), jitter: fullJitter,
			want: t0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := refreshTime(t0, tc.expiry, tc.refreshBefore, tc.jitter)
			g.Expect(got).To(Equal(tc.want))
			if tc.expiry.After(t0) {
				g.Expect(got.Before(tc.expiry)).To(BeTrue(), "a refresh is always planned before the token expires")
			}
		})
	}

	t.Run("jitter is asked for at most a tenth of the lifetime and only ever moves the refresh earlier", func(t *testing.T) {
		g := NewWithT(t)
		var asked []time.Duration
		recording := func(max time.Duration) time.Duration { asked = append(asked, max); return max - 1 }
		unjittered := refreshTime(t0, expiry, nil, noJitter)
		jittered := refreshTime(t0, expiry, nil, recording)
		g.Expect(asked).To(Equal([]time.Duration{lifetime / 10}))
		g.Expect(jittered.Before(unjittered)).To(BeTrue())
		g.Expect(unjittered.Sub(jittered)).To(BeNumerically("<", lifetime/10))
	})
}

func TestRetryDelay(t *testing.T) {
	transient := &failure{reason: "InstanceUnavailable", message: "the instance is unavailable (HTTP 503)", retryable: true}
	rejected := &failure{reason: "AuthenticationFailed", message: "ServiceNow rejected the credentials", retryable: false}
	rateLimited := func(after time.Duration) *failure {
		return &failure{reason: "RateLimited", message: "ServiceNow is rate limiting requests", retryable: true, retryAfter: after}
	}

	for _, tc := range []struct {
		name        string
		failure     *failure
		failures    int32
		tokenExpiry *time.Time
		jitter      Jitter
		want        time.Duration
	}{
		{
			name:    "waits exactly as long as the server's Retry-After asks",
			failure: rateLimited(90 * time.Second), failures: 1, jitter: fullJitter,
			want: 90 * time.Second,
		},
		{
			name:    "lets Retry-After win over the exponential backoff",
			failure: rateLimited(2 * time.Second), failures: 10, jitter: fullJitter,
			want: 2 * time.Second,
		},
		{
			name:    "lets Retry-After win even when the token expires sooner",
			failure: rateLimited(10 * time.Minute), failures: 1, tokenExpiry: timePtr(t0.Add(time.Minute)), jitter: fullJitter,
			want: 10 * time.Minute,
		},
		{
			name:    "retries rejected credentials slowly, every 15 minutes",
			failure: rejected, failures: 1, jitter: fullJitter,
			want: 15 * time.Minute,
		},
		{
			name:    "retries rejected credentials slowly however often they failed",
			failure: rejected, failures: 40, jitter: noJitter,
			want: 15 * time.Minute,
		},
		{
			name:    "does not pull a slow retry in before the token expires: retrying cannot help",
			failure: rejected, failures: 1, tokenExpiry: timePtr(t0.Add(time.Minute)), jitter: fullJitter,
			want: 15 * time.Minute,
		},
		{name: "waits at most 5s after the first transient failure", failure: transient, failures: 1, jitter: fullJitter, want: 5 * time.Second},
		{name: "waits at most 10s after the second transient failure", failure: transient, failures: 2, jitter: fullJitter, want: 10 * time.Second},
		{name: "waits at most 20s after the third transient failure", failure: transient, failures: 3, jitter: fullJitter, want: 20 * time.Second},
		{name: "waits at most 40s after the fourth transient failure", failure: transient, failures: 4, jitter: fullJitter, want: 40 * time.Second},
		{name: "waits at most 80s after the fifth transient failure", failure: transient, failures: 5, jitter: fullJitter, want: 80 * time.Second},
		{name: "waits at most 160s after the sixth transient failure", failure: transient, failures: 6, jitter: fullJitter, want: 160 * time.Second},
		{name: "caps the backoff at 5m from the seventh transient failure", failure: transient, failures: 7, jitter: fullJitter, want: 5 * time.Minute},
		{name: "keeps the backoff at 5m after fifteen transient failures", failure: transient, failures: 15, jitter: fullJitter, want: 5 * time.Minute},
		{name: "keeps the backoff at 5m after sixteen transient failures", failure: transient, failures: 16, jitter: fullJitter, want: 5 * time.Minute},
		{name: "does not overflow after a huge number of failures", failure: transient, failures: math.MaxInt32, jitter: fullJitter, want: 5 * time.Minute},
		{name: "does not overflow when the failure counter wrapped around", failure: transient, failures: math.MinInt32, jitter: fullJitter, want: 5 * time.Minute},
		{
			name:    "never retries sooner than a second, whatever the jitter",
			failure: transient, failures: 1, jitter: noJitter,
			want: time.Second,
		},
		{
			name:    "never retries sooner than a second, even after many failures",
			failure: transient, failures: 30, jitter: noJitter,
			want: time.Second,
		},
		{
			name:    "pulls a retry in to land before a still-valid token expires",
			failure: transient, failures: 7, tokenExpiry: timePtr(t0.Add(2 * time.Minute)), jitter: fullJitter,
			want: time.Minute,
		},
		{
			// Seen in the chaos soak: 18s of a 20s backoff with 20s left,
			// then a rate limit, and the token expired before the retry.
			name:    "leaves room for another retry before a still-valid token expires",
			failure: transient, failures: 3, tokenExpiry: timePtr(t0.Add(20 * time.Second)), jitter: fullJitter,
			want: 10 * time.Second,
		},
		{
			name:    "keeps the backoff when the token outlives it",
			failure: transient, failures: 7, tokenExpiry: timePtr(t0.Add(10 * time.Minute)), jitter: fullJitter,
			want: 5 * time.Minute,
		},
		{
			name:    "keeps the backoff once the token has already expired",
			failure: transient, failures: 7, tokenExpiry: timePtr(t0.Add(-time.Minute)), jitter: fullJitter,
			want: 5 * time.Minute,
		},
		{
			name:    "still waits a second when the token expires in a moment",
			failure: transient, failures: 7, tokenExpiry: timePtr(t0.Add(1500 * time.Millisecond)), jitter: fullJitter,
			want: time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(retryDelay(tc.failure, tc.failures, t0, tc.tokenExpiry, tc.jitter)).To(Equal(tc.want))
		})
	}

	t.Run("draws the transient backoff from the whole range up to its ceiling (full jitter)", func(t *testing.T) {
		g := NewWithT(t)
		var asked time.Duration
		recording := func(max time.Duration) time.Duration { asked = max; return max / 2 }
		g.Expect(retryDelay(transient, 3, t0, nil, recording)).To(Equal(10 * time.Second))
		g.Expect(asked).To(Equal(20*time.Second + 1))
	})
}

func TestRequeueAfter(t *testing.T) {
	for _, tc := range []struct {
		name         string
		next, expiry *time.Time
		want         time.Duration
	}{
		{name: "looks again at the next planned token request", next: timePtr(t0.Add(20 * time.Minute)), want: 20 * time.Minute},
		{name: "looks again when the token expires, so Ready turns False on time", expiry: timePtr(t0.Add(30 * time.Minute)), want: 30 * time.Minute},
		{
			name: "looks again at the planned request when it comes before the expiry",
			next: timePtr(t0.Add(20 * time.Minute)), expiry: timePtr(t0.Add(30 * time.Minute)),
			want: 20 * time.Minute,
		},
		{
			name: "looks again at the expiry when it comes before a retry",
			next: timePtr(t0.Add(time.Hour)), expiry: timePtr(t0.Add(2 * time.Minute)),
			want: 2 * time.Minute,
		},
		{name: "runs a request that is already due a second later, not in a hot loop", next: timePtr(t0.Add(-time.Minute)), want: time.Second},
		{name: "runs a request that is due right now a second later", next: timePtr(t0), want: time.Second},
		{
			name: "ignores an expiry that has already passed",
			next: timePtr(t0.Add(5 * time.Minute)), expiry: timePtr(t0.Add(-time.Minute)),
			want: 5 * time.Minute,
		},
		{name: "does not requeue for an expired token with nothing planned", expiry: timePtr(t0.Add(-time.Minute)), want: 0},
		{name: "does not requeue when nothing is planned", want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(requeueAfter(t0, tc.next, tc.expiry)).To(Equal(tc.want))
		})
	}
}
