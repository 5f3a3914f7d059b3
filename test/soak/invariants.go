package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// checkInterval is how often every token Secret is looked at.
const checkInterval = 250 * time.Millisecond

// invariants watches what applications see in every token Secret: it must
// exist, hold a token, and hold one that has not expired.
type invariants struct {
	keys []client.ObjectKey

	mu         sync.Mutex
	expiry     map[client.ObjectKey]time.Time
	refreshes  int
	missing    map[client.ObjectKey]bool
	blank      map[client.ObjectKey]bool
	expired    map[string]bool // Secret@expiry, once each
	invalidFor map[client.ObjectKey]time.Time
	longest    time.Duration
	samples    int
	// unobservable are checks that could not read the Secrets.
	unobservable int
}

func newInvariants(keys []client.ObjectKey) *invariants {
	return &invariants{keys: keys, expiry: map[client.ObjectKey]time.Time{}, missing: map[client.ObjectKey]bool{},
		blank: map[client.ObjectKey]bool{}, expired: map[string]bool{}, invalidFor: map[client.ObjectKey]time.Time{}}
}

// waitAllValid waits until every token Secret holds a valid token.
func (inv *invariants) waitAllValid(ctx context.Context, c client.Client, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		bad, err := inv.check(ctx, c, false)
		if err != nil {
			return err
		}
		if bad == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d token Secrets hold no valid token after %s", bad, len(inv.keys), within)
		}
		if !sleep(ctx, checkInterval) {
			return ctx.Err()
		}
	}
}

// watch checks every token Secret every checkInterval until ctx ends,
// recording violations. While the API server is away (restarting) nothing
// can be observed, by the soak or by a kubelet: those checks are counted,
// and the first after it is back judges what the Secrets hold. It gives up
// when the API server stays away for longer than unreachableLimit.
func (inv *invariants) watch(ctx context.Context, c client.Client) error {
	var failingSince time.Time
	for sleep(ctx, checkInterval) {
		_, err := inv.check(ctx, c, true)
		switch {
		case ctx.Err() != nil:
		case err == nil:
			failingSince = time.Time{}
		case failingSince.IsZero():
			failingSince = time.Now()
			fallthrough
		default:
			inv.mu.Lock()
			inv.unobservable++
			inv.mu.Unlock()
			if time.Since(failingSince) > unreachableLimit {
				return fmt.Errorf("the API server has been unreachable for %s: %w", unreachableLimit, err)
			}
		}
	}
	return ctx.Err()
}

// unreachableLimit is how long the API server may stay away.
const unreachableLimit = 2 * time.Minute

// check looks at every token Secret once and returns how many hold no
// valid token; record says whether that counts against the invariants.
func (inv *invariants) check(ctx context.Context, c client.Client, record bool) (int, error) {
	var list corev1.SecretList
	if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{snowv1.LabelManagedBy: snowv1.ManagedByValue}); err != nil {
		return 0, err
	}
	now := time.Now()
	byKey := map[client.ObjectKey]*corev1.Secret{}
	for i := range list.Items {
		byKey[client.ObjectKeyFromObject(&list.Items[i])] = &list.Items[i]
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if record {
		inv.samples++
	}
	bad := 0
	for _, key := range inv.keys {
		s, ok := byKey[key]
		valid := false
		switch {
		case !ok:
			if record {
				inv.missing[key] = true
			}
		case len(s.Data[snowv1.TokenKeyAccessToken]) == 0:
			if record {
				inv.blank[key] = true
			}
		default:
			exp, err := time.Parse(time.RFC3339, string(s.Data[snowv1.TokenKeyExpiresAt]))
			if old, seen := inv.expiry[key]; seen && !old.Equal(exp) {
				inv.refreshes++
			}
			inv.expiry[key] = exp
			if err == nil && exp.After(now) {
				valid = true
			} else if record {
				id := fmt.Sprintf("%s@%s", key, exp.Format(time.RFC3339))
				if !inv.expired[id] {
					logf("EXPIRED: %s holds a token that expired at %s", key, exp.Format(time.RFC3339))
				}
				inv.expired[id] = true
			}
		}
		if valid {
			if since, ok := inv.invalidFor[key]; ok {
				inv.longest = max(inv.longest, now.Sub(since))
				delete(inv.invalidFor, key)
			}
			continue
		}
		bad++
		if _, ok := inv.invalidFor[key]; !ok && record {
			inv.invalidFor[key] = now
		}
	}
	return bad, nil
}

// fill copies the observations into r.
func (inv *invariants) fill(r *report) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	r.connections, r.samples, r.refreshes = len(inv.keys), inv.samples-inv.unobservable, inv.refreshes
	r.unobservable = inv.unobservable
	r.missing, r.blank, r.expired = len(inv.missing), len(inv.blank), len(inv.expired)
	r.longestInvalid = inv.longest
	for _, since := range inv.invalidFor {
		r.longestInvalid = max(r.longestInvalid, time.Since(since))
	}
}
