package controllers_test

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/controllers"
	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// The ServiceNow fault matrix, at the reconciler level: for each way an
// instance (or what stands in front of it) fails, what a workload mounting
// the token Secret sees (never a missing, blank or replaced Secret), what
// status says (RefreshFailed with the Kind the ServiceNow client reports),
// how many requests the instance gets (what the backoff allows, Retry-After
// respected, exactly one for a failure a person must fix) and the recovery.
//
// Every case has its own harness (namespace, simulator, manager), so the
// cases of a table run in parallel (two at a time on a 2-core machine).

const tokenPath = "/oauth_token.do"

// tokenCalls is the manager's TokenSource, counting the token requests the
// reconciler makes, including those that never reach the simulator
// (connection refused, DNS, TLS).
type tokenCalls struct {
	controllers.TokenSource
	mu    sync.Mutex
	times []time.Time
}

func (c *tokenCalls) Token(ctx context.Context, req servicenow.TokenRequest) (*servicenow.Token, error) {
	c.mu.Lock()
	c.times = append(c.times, time.Now())
	c.mu.Unlock()
	return c.TokenSource.Token(ctx, req)
}

// between lists the calls made in [from, to).
func (c *tokenCalls) between(from, to time.Time) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, t := range c.times {
		if !t.Before(from) && t.Before(to) {
			out = append(out, t)
		}
	}
	return out
}

// since counts the calls made at or after from.
func (c *tokenCalls) since(from time.Time) func() int {
	return func() int { return len(c.between(from, time.Now().Add(time.Hour))) }
}

func (c *tokenCalls) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.times)
}

// faultWorld is one case of the matrix: a harness whose manager uses a
// ServiceNow client configured like the harness's (allowing localhost,
// giving up after a second) that also trusts the simulator's front door,
// allows the extra domains, and counts its calls.
type faultWorld struct {
	*harness
	door  *simulator.FrontDoor
	calls *tokenCalls
	watch *secretWatch
}

func newFaultWorld(t *testing.T, lifespan time.Duration, allowedDomains ...string) *faultWorld {
	t.Helper()
	h := newHarness(t, lifespan)
	door, err := h.sim.OpenFrontDoor()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(door.Close)
	c, err := servicenow.NewClient(servicenow.Options{
		AllowedDomains: append([]string{"localhost"}, allowedDomains...),
		CABundle:       slices.Concat(h.sim.CACertPEM(), door.CACertPEM()),
		Timeout:        time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &faultWorld{harness: h, door: door, calls: &tokenCalls{TokenSource: c}}
	h.restartManagerWith(w.calls)
	return w
}

// restartManagerWith replaces the harness's manager, before any connection
// exists, by one whose reconciler talks to ServiceNow through tokens.
func (h *harness) restartManagerWith(tokens controllers.TokenSource) {
	h.t.Helper()
	h.stopManager()
	h.metrics = prometheus.NewPedanticRegistry()
	h.mgr, h.stop = env.StartManager(h.t, testenv.Manager{
		Metrics:       h.metrics,
		Namespaces:    []string{h.ns},
		Tokens:        tokens,
		Authorization: h.authz,
		RevokeTimeout: h.revokeTimeout,
		Logs:          h.logs,
		NewClient: func(cfg *rest.Config, opts client.Options) (client.Client, error) {
			c, err := client.New(cfg, opts)
			return &countingClient{Client: c, writes: h.writes}, err
		},
	})
}

// tokenFrom creates the connection "orders" with grant against instance
// (extra adds credentials keys), waits until it is Ready and starts
// watching its token Secret. It returns the Secret.
func (w *faultWorld) tokenFrom(instance string, grant snowv1.GrantType, extra map[string]string) *corev1.Secret {
	w.t.Helper()
	d := w.clientCredentials()
	d["instance"] = instance
	maps.Copy(d, extra)
	w.credentials("creds", d)
	w.connection("orders", "creds", grant)
	w.g.Eventually(w.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	secret := w.tokenSecret("orders-token")
	w.watch = w.watchTokenSecret("orders-token")
	return secret
}

// setInstance points the credentials Secret at another instance.
func (w *faultWorld) setInstance(instance string) {
	d := w.clientCredentials()
	d["instance"] = instance
	w.credentials("creds", d)
}

// message is the message of the connection's condition typ, "" if absent.
func (w *faultWorld) message(typ string) func() string {
	return func() string {
		if c := w.condition("orders", typ); c != nil {
			return c.Message
		}
		return ""
	}
}

// expectSecretNeverMissingBlankOrReplaced stops the watch and checks what
// it saw.
func (w *faultWorld) expectSecretNeverMissingBlankOrReplaced() {
	w.t.Helper()
	violations, samples := w.watch.finish()
	w.g.Expect(violations).To(BeEmpty(), "what a workload reading the token Secret saw")
	w.g.Expect(samples).To(BeNumerically(">=", 10), "the watch sampled the Secret throughout")
}

// secretWatch reads a token Secret every 50 ms, from the API server, until
// finish, and collects what a workload mounting it must never see: the
// Secret missing (or deleted and created again in between), a key blank,
// or, while held, any byte of it changed, or it written at all (a new
// resourceVersion: a write undone within 50 ms shows there).
type secretWatch struct {
	key  types.NamespacedName
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu         sync.Mutex
	uid        types.UID
	held       *corev1.Secret
	failing    func() bool
	samples    int
	last       string
	violations []string
}

func (h *harness) watchTokenSecret(name string) *secretWatch {
	w := &secretWatch{key: types.NamespacedName{Namespace: h.ns, Name: name}, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	h.t.Cleanup(func() { w.finish() })
	return w
}

func (w *secretWatch) run() {
	defer close(w.done)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		w.sample()
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
	}
}

func (w *secretWatch) sample() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var s corev1.Secret
	err := env.Client.Get(ctx, w.key, &s)
	if err != nil && !apierrors.IsNotFound(err) {
		return // the API server did not answer: nothing to judge
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// Judged after the read: a Secret that changed once the failure was
	// over is read while failing already says false.
	held := w.held != nil && (w.failing == nil || w.failing())
	w.samples++
	if w.uid == "" {
		w.uid = s.UID
	}
	problem := ""
	switch {
	case err != nil:
		problem = "the token Secret is missing"
	case s.UID != w.uid:
		problem = "the token Secret was deleted and created again"
	case held && !reflect.DeepEqual(s.Data, w.held.Data):
		problem = fmt.Sprintf("the token Secret was rewritten while the instance was failing (changed: %v)", changedKeys(w.held.Data, s.Data))
	case held && s.ResourceVersion != w.held.ResourceVersion:
		problem = fmt.Sprintf("the token Secret was written while the instance was failing (resourceVersion %s, then %s)",
			w.held.ResourceVersion, s.ResourceVersion)
	default:
		for _, k := range []string{snowv1.TokenKeyAccessToken, snowv1.TokenKeyTokenType, snowv1.TokenKeyExpiresAt, snowv1.TokenKeyInstanceURL} {
			if len(s.Data[k]) == 0 {
				problem = "the token Secret's " + k + " is blank"
				break
			}
		}
	}
	if problem != "" && problem != w.last && len(w.violations) < 10 {
		w.violations = append(w.violations, time.Now().Format("15:04:05.000")+" "+problem)
	}
	w.last = problem
}

// hold says the Secret must stay exactly secret from now on, not even
// written: until release, or while failing (when not nil) says the
// instance is still failing.
func (w *secretWatch) hold(secret *corev1.Secret, failing func() bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held, w.failing = secret, failing
}

// release lets the Secret change again.
func (w *secretWatch) release() { w.hold(nil, nil) }

// finish stops the watch (once) and reports what it saw.
func (w *secretWatch) finish() (violations []string, samples int) {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.violations), w.samples
}

func changedKeys(a, b map[string][]byte) []string {
	var keys []string
	for k := range a {
		if string(a[k]) != string(b[k]) {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// expectBackoff checks the attempts made during window while a transient
// failure lasted: never two closer than the backoff's floor (1 s; 100 ms
// of slack for the reconciles' own work), hence no more than 1 + window/1 s.
func expectBackoff(g Gomega, attempts []time.Time, window time.Duration) {
	g.Expect(len(attempts)).To(BeNumerically("<=", 1+int(window/time.Second)),
		"no more token requests in %v than a backoff of at least 1 s allows", window.Round(time.Millisecond))
	for i := 1; i < len(attempts); i++ {
		g.Expect(attempts[i].Sub(attempts[i-1])).To(BeNumerically(">=", 900*time.Millisecond),
			"attempts %d and %d of %d came too close: a hot loop", i, i+1, len(attempts))
	}
}

func TestFaultMatrixTransientFailuresKeepTheTokenBackOffAndRecover(t *testing.T) {
	cases := []struct {
		name    string
		reason  servicenow.Kind
		message string
		// lifespan is the access tokens' (default 30 minutes);
		// outlive says the failure lasts past the token's expiry.
		lifespan time.Duration
		outlive  bool
		// viaDoor points the connection at the simulator's front door.
		viaDoor bool
		// allowed are domains the client allows besides localhost.
		allowed []string
		// reaches says the failing attempts reach the simulator.
		reaches bool
		// fail makes the instance fail and a token request due; heal
		// makes it work again.
		fail, heal func(w *faultWorld)
	}{
		{
			name: "503 Service Unavailable", reason: servicenow.KindInstanceUnavailable, message: "HTTP 503", reaches: true,
			fail: func(w *faultWorld) {
				w.sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503, Path: tokenPath})
				w.requestRefresh("orders", "503")
			},
			heal: func(w *faultWorld) { w.sim.ClearFault() },
		},
		{
			name: "an instance that never answers, given up on after 1 s", reason: servicenow.KindTimeout, message: "no complete answer", reaches: true,
			fail: func(w *faultWorld) {
				w.sim.SetFault(simulator.Fault{Kind: simulator.FaultHang, Path: tokenPath})
				w.requestRefresh("orders", "hang")
			},
			heal: func(w *faultWorld) { w.sim.ClearFault() },
		},
		{
			// The planned refresh of an 8-second token meets it; the
			// retries are pulled in before the expiry, then back off.
			name: "an instance that hangs until after the token expired", reason: servicenow.KindTimeout, message: "no complete answer",
			lifespan: 8 * time.Second, outlive: true, reaches: true,
			fail: func(w *faultWorld) { w.sim.SetFault(simulator.Fault{Kind: simulator.FaultHang, Path: tokenPath}) },
			heal: func(w *faultWorld) { w.sim.ClearFault() },
		},
		{
			name: "connection refused", reason: servicenow.KindInstanceUnavailable, message: "refused the connection", viaDoor: true,
			fail: func(w *faultWorld) {
				w.door.Down()
				w.requestRefresh("orders", "refused")
			},
			heal: func(w *faultWorld) { w.g.Expect(w.door.Up()).To(Succeed()) },
		},
		{
			name: "connection dropped mid-response", reason: servicenow.KindInstanceUnavailable, message: "closed the connection before answering",
			viaDoor: true, reaches: true,
			fail: func(w *faultWorld) {
				w.door.CutResponses(20)
				w.requestRefresh("orders", "cut")
			},
			heal: func(w *faultWorld) { w.door.CutResponses(0) },
		},
		{
			name: "the hibernation page", reason: servicenow.KindInstanceHibernating, message: "hibernating", reaches: true,
			fail: func(w *faultWorld) {
				w.sim.SetFault(simulator.Fault{Kind: simulator.FaultHibernating})
				w.requestRefresh("orders", "hibernating")
			},
			heal: func(w *faultWorld) { w.sim.ClearFault() },
		},
		{
			name: "malformed JSON", reason: servicenow.KindInvalidResponse, message: "not well-formed JSON", reaches: true,
			fail: func(w *faultWorld) {
				w.sim.SetFault(simulator.Fault{Kind: simulator.FaultMalformedJSON, Path: tokenPath})
				w.requestRefresh("orders", "malformed")
			},
			heal: func(w *faultWorld) { w.sim.ClearFault() },
		},
		{
			name: "a 200 whose JSON has no access_token", reason: servicenow.KindInvalidResponse, message: "access_token is missing", reaches: true,
			fail: func(w *faultWorld) {
				w.sim.SetFault(simulator.Fault{Kind: simulator.FaultResponse, Status: 200, ContentType: "application/json;charset=UTF-8",
					Path: tokenPath, Body: `{"scope":"useraccount","token_type":"Bearer","expires_in":1799}`})
				w.requestRefresh("orders", "no-access-token")
			},
			heal: func(w *faultWorld) { w.sim.ClearFault() },
		},
		{
			// RFC 6761: names under .invalid never resolve. Moving the
			// credentials to it is itself the change that makes a request
			// due; moving them back heals it.
			name: "an instance host name that does not resolve", reason: servicenow.KindInstanceUnavailable, message: "cannot resolve nosuchhost.snow.invalid",
			allowed: []string{"snow.invalid"},
			fail:    func(w *faultWorld) { w.setInstance("https://nosuchhost.snow.invalid") },
			heal:    func(w *faultWorld) { w.setInstance(w.instanceURL()) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newFaultWorld(t, cmp.Or(tc.lifespan, 30*time.Minute), tc.allowed...)
			g := w.g
			instance := w.instanceURL()
			if tc.viaDoor {
				instance = w.door.LocalhostURL()
			}
			before := w.tokenFrom(instance, snowv1.GrantClientCredentials, nil)
			reached := w.tokenRequests(simulator.GrantClientCredentials)
			g.Expect(reached()).To(Equal(1))

			w.watch.hold(before, nil)
			failedAt := time.Now()
			tc.fail(w)
			g.Eventually(w.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal(string(tc.reason)))
			g.Eventually(w.message(snowv1.ConditionRefreshFailed), soon, interval).Should(ContainSubstring(tc.message))
			g.Expect(w.readyStatus("orders")()).To(Equal("True/TokenValid"), "the old token is still valid")
			g.Expect(w.conditionReason("orders", snowv1.ConditionReconciling)()).To(Equal(string(tc.reason)), "it is retrying")
			g.Expect(w.condition("orders", snowv1.ConditionStalled)).To(BeNil())

			// A retry comes within the first backoff step (at most 5 s,
			// rounded up to a whole second), and none faster than 1 s.
			g.Eventually(w.calls.since(failedAt), 10*time.Second, interval).Should(BeNumerically(">=", 2))
			if tc.outlive {
				g.Eventually(w.readyStatus("orders"), soon, interval).Should(Equal("False/TokenExpired"))
				g.Expect(w.message(snowv1.ConditionReady)()).To(ContainSubstring("the last refresh failed"))
			}
			healedAt := time.Now()
			attempts := w.calls.between(failedAt, healedAt)
			expectBackoff(g, attempts, healedAt.Sub(failedAt))
			if tc.reaches {
				// As the instance saw them (the last may still be on its
				// way).
				seen := w.sim.TokenRequestLog()[1:]
				g.Expect(len(seen)).To(BeNumerically(">=", len(attempts)-1), "the failing attempts reached the instance")
				times := make([]time.Time, len(seen))
				for i, r := range seen {
					times[i] = r.Time
				}
				expectBackoff(g, times, healedAt.Sub(failedAt))
			} else {
				g.Expect(reached()).To(Equal(1), "the failing attempts never reached the instance")
			}

			w.watch.release()
			tc.heal(w)
			g.Eventually(w.conditionReason("orders", snowv1.ConditionRefreshFailed), time.Minute, interval).Should(BeEmpty())
			g.Expect(w.readyStatus("orders")()).To(Equal("True/TokenValid"))
			g.Expect(w.condition("orders", snowv1.ConditionReconciling)).To(BeNil())
			g.Expect(w.get("orders").Status.ConsecutiveFailures).To(BeZero())
			if tc.reaches {
				g.Eventually(func() int { return reached() - w.calls.total() }, soon, interval).Should(BeZero(),
					"each token request was one request at the instance, no more")
			}
			_, known := w.sim.TokenExpiry(w.accessToken("orders-token")())
			g.Expect(known).To(BeTrue(), "the Secret holds a token the instance issued")
			w.expectSecretNeverMissingBlankOrReplaced()
		})
	}
}

func TestFaultMatrixRateLimitIsWaitedOutBeforeTheNextRequest(t *testing.T) {
	// Longer than the first backoff step can be (5 s, plus rounding to a
	// whole second): a retry that ignored Retry-After would come sooner.
	const wait = 7 * time.Second
	for _, tc := range []struct {
		name string
		date bool
	}{
		{"429 with Retry-After in seconds", false},
		{"429 with Retry-After as an HTTP date", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newFaultWorld(t, 30*time.Minute)
			g := w.g
			before := w.tokenFrom(w.instanceURL(), snowv1.GrantClientCredentials, nil)
			requests := w.sim.TokenRequests("", "")

			// The Secret stays as it is until the retry after the 429.
			w.watch.hold(before, func() bool { return w.sim.TokenRequests("", "") < requests+2 })
			failedAt := time.Now()
			w.sim.SetFault(simulator.Fault{Kind: simulator.FaultRateLimited, RetryAfter: wait, RetryAfterDate: tc.date, Path: tokenPath, Times: 1})
			w.requestRefresh("orders", "rate-limited")
			g.Eventually(w.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("RateLimited"))
			g.Expect(w.readyStatus("orders")()).To(Equal("True/TokenValid"))
			g.Expect(w.conditionReason("orders", snowv1.ConditionReconciling)()).To(Equal("RateLimited"))
			g.Expect(w.message(snowv1.ConditionRefreshFailed)()).To(ContainSubstring("retry after"))
			limited := w.sim.TokenRequestLog()[requests]
			g.Expect(limited.Status).To(Equal(429))
			// An HTTP date has whole seconds: the simulator sends the
			// moment of its answer plus wait, truncated.
			passes := limited.Time.Add(wait)
			if tc.date {
				passes = passes.Truncate(time.Second)
			}
			g.Expect(w.get("orders").Status.NextRefreshTime.Time).To(BeTemporally(">=", passes.Truncate(time.Second)),
				"status plans the retry after Retry-After")

			g.Eventually(w.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(BeEmpty())
			g.Expect(w.readyStatus("orders")()).To(Equal("True/TokenValid"))
			log := w.sim.TokenRequestLog()
			g.Expect(log).To(HaveLen(requests+2), "one request limited, one retry")
			// The reconciler counts the wait from just before it sent the
			// limited request, rounded up to a whole second: with seconds,
			// allow for the time the request took on its way.
			slack := time.Duration(0)
			if !tc.date {
				slack = 200 * time.Millisecond
			}
			g.Expect(log[requests+1].Time).To(BeTemporally(">=", passes.Add(-slack)), "no request before Retry-After passed")
			g.Expect(log[requests+1].Status).To(Equal(200))
			g.Expect(w.calls.since(failedAt)()).To(Equal(2))
			w.expectSecretNeverMissingBlankOrReplaced()
		})
	}
}

func TestFaultMatrixFailuresAPersonMustFixKeepTheTokenUntilItExpiresAndAskOnce(t *testing.T) {
	cases := []struct {
		name     string
		lifespan time.Duration
		grant    snowv1.GrantType
		viaDoor  bool
		reason   servicenow.Kind
		message  string
		// expires says the token in the Secret expires during the case.
		expires bool
		// reached and handshakes are what the one failing attempt
		// shows at the simulator (token requests) and at its front door
		// (TLS handshakes begun).
		reached, handshakes int
		// fail makes the instance refuse (a refresh must come on its
		// own, or fail asks for one); fix is what a person does.
		fail, fix func(w *faultWorld)
	}{
		{
			name:     "401 while the old token is still valid: the client secret was changed at ServiceNow",
			lifespan: 8 * time.Second, grant: snowv1.GrantClientCredentials, expires: true,
			reason: servicenow.KindAuthenticationFailed, message: "HTTP 401", reached: 1,
			fail: func(w *faultWorld) {
				// The planned refresh, some 4 s in, meets it.
				w.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: "CANARY-changed-at-servicenow", ApplicationUser: appUser})
			},
			fix: func(w *faultWorld) {
				d := w.clientCredentials()
				d["client_secret"] = "CANARY-changed-at-servicenow"
				w.credentials("creds", d)
			},
		},
		{
			name:     "401 while the old token is still valid: the OAuth client was deactivated",
			lifespan: 30 * time.Minute, grant: snowv1.GrantClientCredentials,
			reason: servicenow.KindAuthenticationFailed, message: "HTTP 401", reached: 1,
			fail: func(w *faultWorld) {
				w.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser, Inactive: true})
				w.requestRefresh("orders", "deactivated")
			},
			fix: func(w *faultWorld) {
				w.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser})
				w.requestRefresh("orders", "reactivated")
			},
		},
		{
			name:     "a refresh token that died: the instance's clock passed its lifespan",
			lifespan: 8 * time.Second, grant: snowv1.GrantRefreshToken, expires: true,
			reason: servicenow.KindAuthenticationFailed, message: "refresh token expired or was revoked", reached: 1,
			fail: func(w *faultWorld) {
				w.sim.Advance(simulator.DefaultRefreshTokenLifespan + 24*time.Hour)
			},
			fix: func(w *faultWorld) {
				rt, err := w.sim.IssueRefreshToken(clientID, username)
				w.g.Expect(err).NotTo(HaveOccurred())
				d := w.clientCredentials()
				d["refresh_token"] = rt
				w.credentials("creds", d)
			},
		},
		{
			name:     "a redirect, never followed",
			lifespan: 30 * time.Minute, grant: snowv1.GrantClientCredentials,
			reason: servicenow.KindInvalidInstance, message: "redirected (HTTP 307) to the host localhost", reached: 1,
			fail: func(w *faultWorld) {
				// To a host the client trusts: following it would work,
				// and the front door would see it.
				w.sim.SetFault(simulator.Fault{Kind: simulator.FaultRedirect, Status: 307, Path: tokenPath,
					Location: w.door.LocalhostURL() + tokenPath})
				w.requestRefresh("orders", "redirect")
			},
			fix: func(w *faultWorld) {
				w.sim.ClearFault()
				w.requestRefresh("orders", "fixed")
			},
		},
		{
			name:     "a 404: no token endpoint at the instance URL",
			lifespan: 30 * time.Minute, grant: snowv1.GrantClientCredentials,
			reason: servicenow.KindInvalidInstance, message: "no ServiceNow endpoint at this URL", reached: 1,
			fail: func(w *faultWorld) {
				w.sim.SetFault(simulator.Fault{Kind: simulator.FaultResponse, Status: 404, ContentType: "text/html", Path: tokenPath,
					Body: "<html><body>Not Found</body></html>"})
				w.requestRefresh("orders", "not-found")
			},
			fix: func(w *faultWorld) {
				w.sim.ClearFault()
				w.requestRefresh("orders", "fixed")
			},
		},
		{
			name:     "TLS with a certificate from an unknown CA",
			lifespan: 30 * time.Minute, grant: snowv1.GrantClientCredentials, viaDoor: true,
			reason: servicenow.KindTLSError, message: "cannot verify the TLS certificate", handshakes: 1,
			fail: func(w *faultWorld) {
				w.g.Expect(w.door.UseCertificate(simulator.CertificateUnknownAuthority)).To(Succeed())
				w.requestRefresh("orders", "unknown-ca")
			},
			fix: func(w *faultWorld) {
				w.g.Expect(w.door.UseCertificate(simulator.CertificateValid)).To(Succeed())
				w.requestRefresh("orders", "fixed")
			},
		},
		{
			name:     "TLS with a certificate for another host",
			lifespan: 30 * time.Minute, grant: snowv1.GrantClientCredentials, viaDoor: true,
			reason: servicenow.KindTLSError, message: "is for another host", handshakes: 1,
			fail: func(w *faultWorld) {
				w.g.Expect(w.door.UseCertificate(simulator.CertificateOtherHost)).To(Succeed())
				w.requestRefresh("orders", "other-host")
			},
			fix: func(w *faultWorld) {
				w.g.Expect(w.door.UseCertificate(simulator.CertificateValid)).To(Succeed())
				w.requestRefresh("orders", "fixed")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newFaultWorld(t, tc.lifespan)
			g := w.g
			instance := w.instanceURL()
			if tc.viaDoor {
				instance = w.door.LocalhostURL()
			}
			var extra map[string]string
			if tc.grant == snowv1.GrantRefreshToken {
				rt, err := w.sim.IssueRefreshToken(clientID, username)
				g.Expect(err).NotTo(HaveOccurred())
				extra = map[string]string{"refresh_token": rt}
			}
			before := w.tokenFrom(instance, tc.grant, extra)
			reached, handshakes, doorRequests := w.sim.TokenRequests("", ""), w.door.Handshakes(), w.door.Requests()

			w.watch.hold(before, nil)
			failedAt := time.Now()
			tc.fail(w)
			g.Eventually(w.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal(string(tc.reason)))
			g.Expect(w.message(snowv1.ConditionRefreshFailed)()).To(ContainSubstring(tc.message))
			g.Expect(w.readyStatus("orders")()).To(Equal("True/TokenValid"), "the old token stays valid until it expires")
			g.Expect(w.conditionReason("orders", snowv1.ConditionStalled)()).To(Equal(string(tc.reason)))
			g.Expect(w.condition("orders", snowv1.ConditionReconciling)).To(BeNil())
			g.Expect(w.get("orders").Status.NextRefreshTime.Time).To(BeTemporally(">", time.Now().Add(10*time.Minute)),
				"retried slowly, not on the backoff of transient failures")
			g.Eventually(w.eventReasons, soon, interval).Should(ContainElement(string(tc.reason)))
			if tc.expires {
				g.Eventually(w.readyStatus("orders"), soon, interval).Should(Equal("False/TokenExpired"))
				g.Expect(w.message(snowv1.ConditionReady)()).To(ContainSubstring("the last refresh failed"))
			}

			// Nothing more is sent until something changes; an unrelated
			// edit of the connection is not a change.
			w.annotate("orders", "example.com/owner", "team-orders")
			g.Consistently(w.calls.since(failedAt), 2*time.Second, interval).Should(Equal(1),
				"exactly one token request: an unrelated edit must not send again a request the instance refused")
			g.Expect(w.sim.TokenRequests("", "")-reached).To(Equal(tc.reached), "token requests at the instance")
			g.Expect(w.door.Handshakes()-handshakes).To(Equal(tc.handshakes), "TLS handshakes at the front door")
			g.Expect(w.door.Requests()-doorRequests).To(BeZero(), "nothing reached the front door: no redirect followed, no credentials sent over bad TLS")

			w.watch.release()
			tc.fix(w)
			g.Eventually(w.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(BeEmpty())
			g.Expect(w.readyStatus("orders")()).To(Equal("True/TokenValid"))
			g.Expect(w.condition("orders", snowv1.ConditionStalled)).To(BeNil())
			g.Expect(w.accessToken("orders-token")()).NotTo(BeEmpty())
			w.expectSecretNeverMissingBlankOrReplaced()
		})
	}
}
