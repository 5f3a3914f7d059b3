package controllers_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// Timeouts for Eventually: long enough for a loaded 2-core CI machine, far
// shorter than any backoff the operator uses for the failure under test.
const (
	soon     = 20 * time.Second
	interval = 100 * time.Millisecond
)

func TestEachGrantWritesATokenSecretAndTurnsReady(t *testing.T) {
	cases := []struct {
		grant    snowv1.GrantType
		simGrant string
		creds    func(h *harness) map[string]string
	}{
		{snowv1.GrantClientCredentials, simulator.GrantClientCredentials, func(h *harness) map[string]string {
			return h.clientCredentials()
		}},
		{snowv1.GrantPassword, simulator.GrantPassword, func(h *harness) map[string]string {
			d := h.clientCredentials()
			d["username"], d["password"] = username, password
			return d
		}},
		{snowv1.GrantRefreshToken, simulator.GrantRefreshToken, func(h *harness) map[string]string {
			rt, err := h.sim.IssueRefreshToken(clientID, username)
			h.g.Expect(err).NotTo(HaveOccurred())
			d := h.clientCredentials()
			d["refresh_token"] = rt
			return d
		}},
	}
	for _, tc := range cases {
		t.Run(string(tc.grant), func(t *testing.T) {
			h := newHarness(t, 30*time.Minute)
			g := h.g
			h.credentials("creds", tc.creds(h))
			conn := h.connection("orders", "creds", tc.grant, func(c *snowv1.ServiceNowConnection) {
				c.Spec.TokenSecret.Labels = map[string]snowv1.LabelValue{"team": "orders"}
				c.Spec.TokenSecret.Annotations = map[string]string{"example.com/note": "mounted by orders-api"}
			})
			start := time.Now()

			g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
			g.Expect(h.tokenRequests(tc.simGrant)()).To(Equal(1), "one token request for one token")

			secret := h.tokenSecret("orders-token")
			g.Expect(secret).NotTo(BeNil())
			g.Expect(secret.Type).To(Equal(corev1.SecretTypeOpaque))
			g.Expect(secret.Data).To(HaveKey(snowv1.TokenKeyAccessToken))
			g.Expect(string(secret.Data[snowv1.TokenKeyTokenType])).To(Equal("Bearer"))
			g.Expect(string(secret.Data[snowv1.TokenKeyInstanceURL])).To(Equal(h.instanceURL()))
			expiresAt, err := time.Parse(time.RFC3339, string(secret.Data[snowv1.TokenKeyExpiresAt]))
			g.Expect(err).NotTo(HaveOccurred())
			// ServiceNow sends expires_in = lifespan - 1 s.
			g.Expect(expiresAt).To(BeTemporally("~", start.Add(30*time.Minute), 10*time.Second))
			simExpiry, known := h.sim.TokenExpiry(string(secret.Data[snowv1.TokenKeyAccessToken]))
			g.Expect(known).To(BeTrue(), "the Secret holds the token ServiceNow issued")
			g.Expect(simExpiry).To(BeTemporally("~", expiresAt, 2*time.Second))

			g.Expect(secret.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "snowauth"))
			g.Expect(secret.Labels).To(HaveKeyWithValue("servicenow.snowauth.dev/connection", "orders"))
			g.Expect(secret.Labels).To(HaveKeyWithValue("team", "orders"))
			g.Expect(secret.Annotations).To(HaveKeyWithValue("example.com/note", "mounted by orders-api"))
			owner := metav1.GetControllerOf(secret)
			g.Expect(owner).NotTo(BeNil(), "the token Secret has a controller owner reference, so it is garbage-collected with the connection")
			g.Expect(owner.UID).To(Equal(h.get("orders").UID))
			g.Expect(owner.Kind).To(Equal("ServiceNowConnection"))

			got := h.get("orders")
			g.Expect(got.Status.ExpiresAt.Time).To(BeTemporally("==", expiresAt))
			g.Expect(got.Status.TokenSecretName).To(Equal("orders-token"))
			g.Expect(got.Status.InstanceURL).To(Equal(h.instanceURL()))
			g.Expect(got.Status.ObservedGeneration).To(Equal(conn.Generation))
			g.Expect(got.Status.NextRefreshTime.Time).To(BeTemporally("<", expiresAt.Add(-9*time.Minute)),
				"a 30-minute token is refreshed about 10 minutes before it expires")
			g.Expect(got.Status.NextRefreshTime.Time).To(BeTemporally(">", expiresAt.Add(-14*time.Minute)))
			g.Expect(h.condition("orders", snowv1.ConditionRefreshFailed)).To(BeNil())
			g.Expect(h.condition("orders", snowv1.ConditionReconciling)).To(BeNil())
			g.Expect(h.condition("orders", snowv1.ConditionStalled)).To(BeNil())
		})
	}
}

func TestTokenIsRefreshedBeforeItExpires(t *testing.T) {
	h := newHarness(t, 6*time.Second)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	first := h.get("orders").Status

	// Each token lives 5 s (lifespan 6 s minus 1): the second one must be in
	// the Secret before the first expires.
	g.Eventually(func() time.Time {
		if e := h.get("orders").Status.ExpiresAt; e != nil {
			return e.Time
		}
		return time.Time{}
	}, soon, interval).Should(BeTemporally(">", first.ExpiresAt.Time))
	g.Expect(time.Now()).To(BeTemporally("<", first.ExpiresAt.Add(time.Second)),
		"the refresh landed before the first token expired (to the second of expires_at)")
	second := h.get("orders").Status
	g.Expect(second.LastRefreshTime.Time).To(BeTemporally(">", first.LastRefreshTime.Time))
	g.Expect(second.LastRefreshTime.Time).To(BeTemporally("<", first.ExpiresAt.Time))
	g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"))
	g.Expect(string(h.tokenSecret("orders-token").Data[snowv1.TokenKeyExpiresAt])).
		To(Equal(second.ExpiresAt.UTC().Format(time.RFC3339)))
}

func TestReadyTurnsFalseAtExpiryWhenRefreshKeepsFailing(t *testing.T) {
	h := newHarness(t, 6*time.Second)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	before := h.tokenSecret("orders-token").Data

	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503, Path: "/oauth_token.do"})
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("InstanceUnavailable"))
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("False/TokenExpired"))

	ready := h.condition("orders", snowv1.ConditionReady)
	g.Expect(ready.Message).To(ContainSubstring("the last refresh failed"))
	g.Expect(ready.Message).To(ContainSubstring("503"))
	g.Expect(h.tokenSecret("orders-token").Data).To(Equal(before), "a failing refresh never blanks or deletes the last token")
	g.Expect(h.get("orders").Status.ConsecutiveFailures).To(BeNumerically(">=", 1))
	g.Expect(h.conditionReason("orders", snowv1.ConditionReconciling)()).To(Equal("InstanceUnavailable"))

	h.sim.ClearFault()
	g.Eventually(h.readyStatus("orders"), time.Minute, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.condition("orders", snowv1.ConditionRefreshFailed)).To(BeNil())
	g.Expect(h.get("orders").Status.ConsecutiveFailures).To(BeZero())
}

func TestMissingCredentialsSecretIsReportedThenUsedOnceCreated(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.connection("orders", "creds", snowv1.GrantClientCredentials)

	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("False/CredentialsNotFound"))
	g.Expect(h.conditionReason("orders", snowv1.ConditionStalled)()).To(Equal("CredentialsNotFound"))
	g.Expect(h.condition("orders", snowv1.ConditionReady).Message).To(ContainSubstring("credentials Secret creds not found"))
	g.Expect(h.tokenSecret("orders-token")).To(BeNil())

	// The operator retries slowly (15 min); creating the Secret must not wait for that.
	h.credentials("creds", h.clientCredentials())
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.condition("orders", snowv1.ConditionStalled)).To(BeNil())
}

func TestMissingCredentialsKeyIsNamedInTheCondition(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	d := h.clientCredentials()
	d["username"] = username // the password is missing
	h.credentials("creds", d)
	h.connection("orders", "creds", snowv1.GrantPassword)

	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("False/CredentialsInvalid"))
	msg := h.condition("orders", snowv1.ConditionReady).Message
	g.Expect(msg).To(ContainSubstring(`no key "password"`))
	g.Expect(msg).To(ContainSubstring("Password grant"))
	g.Expect(h.tokenRequests(simulator.GrantPassword)()).To(BeZero(), "nothing is sent while a key is missing")

	d["password"] = password
	h.credentials("creds", d)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
}

func TestRotatedCredentialsGetANewTokenWithinSeconds(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	oldToken := h.accessToken("orders-token")()

	// Rotate to a new OAuth client: its token differs from the old one.
	h.sim.AddClient(simulator.OAuthClient{ID: "rotated-client", Secret: "CANARY-rotated-secret", ApplicationUser: appUser})
	d := h.clientCredentials()
	d["client_id"], d["client_secret"] = "rotated-client", "CANARY-rotated-secret"
	h.credentials("creds", d)

	g.Eventually(h.accessToken("orders-token"), soon, interval).ShouldNot(Equal(oldToken))
	g.Expect(h.sim.TokenRequests("rotated-client", simulator.GrantClientCredentials)).To(Equal(1))
	g.Eventually(h.eventReasons, soon, interval).Should(ContainElement("CredentialsChanged"))
}

func TestRejectedCredentialsStallWithoutAHotLoopAndRecoverWhenFixed(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	d := h.clientCredentials()
	d["client_secret"] = "CANARY-wrong-secret"
	h.credentials("creds", d)
	h.connection("orders", "creds", snowv1.GrantClientCredentials)

	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("False/AuthenticationFailed"))
	g.Expect(h.conditionReason("orders", snowv1.ConditionStalled)()).To(Equal("AuthenticationFailed"))
	g.Expect(h.conditionReason("orders", snowv1.ConditionRefreshFailed)()).To(Equal("AuthenticationFailed"))
	g.Expect(h.condition("orders", snowv1.ConditionRefreshFailed).Message).To(ContainSubstring("401"))
	g.Expect(h.condition("orders", snowv1.ConditionReconciling)).To(BeNil())
	next := h.get("orders").Status.NextRefreshTime.Time
	g.Expect(next).To(BeTemporally(">", time.Now().Add(10*time.Minute)), "rejected credentials are retried slowly")

	// No hot loop: the one rejected request is all ServiceNow sees.
	g.Consistently(h.tokenRequests(simulator.GrantClientCredentials), 3*time.Second, interval).Should(Equal(1))
	g.Eventually(h.eventReasons, soon, interval).Should(ContainElement("AuthenticationFailed"))

	h.credentials("creds", h.clientCredentials())
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.condition("orders", snowv1.ConditionStalled)).To(BeNil())
	g.Expect(h.get("orders").Status.ConsecutiveFailures).To(BeZero())
}

// TestTransientFailuresKeepTheTokenAndRecover holds one case per transient
// failure kind, each met during a forced refresh of a valid token.
func TestTransientFailuresKeepTheTokenAndRecover(t *testing.T) {
	cases := []struct {
		name   string
		fault  simulator.Fault
		reason string
	}{
		{"keeps the old token when the instance returns 503", simulator.Fault{Kind: simulator.FaultServerError, Status: 503}, "InstanceUnavailable"},
		{"keeps the old token when the instance hangs", simulator.Fault{Kind: simulator.FaultHang}, "Timeout"},
		{"keeps the old token when the instance hibernates", simulator.Fault{Kind: simulator.FaultHibernating}, "InstanceHibernating"},
		{"keeps the old token when the response is malformed JSON", simulator.Fault{Kind: simulator.FaultMalformedJSON}, "InvalidResponse"},
		{"keeps the old token when the connection drops", simulator.Fault{Kind: simulator.FaultDropConnection}, "InstanceUnavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 30*time.Minute)
			g := h.g
			h.credentials("creds", h.clientCredentials())
			h.connection("orders", "creds", snowv1.GrantClientCredentials)
			g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
			before := h.tokenSecret("orders-token")

			h.sim.SetFault(tc.fault)
			h.requestRefresh("orders", "1")
			g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal(tc.reason))
			g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"), "the old token is still valid")
			g.Expect(h.conditionReason("orders", snowv1.ConditionReconciling)()).To(Equal(tc.reason))
			after := h.tokenSecret("orders-token")
			g.Expect(after.Data).To(Equal(before.Data), "the Secret is byte-for-byte unchanged")
			g.Expect(after.ResourceVersion).To(Equal(before.ResourceVersion), "the Secret was not even rewritten")

			h.sim.ClearFault()
			// The first retries come within seconds (5 s backoff, jittered).
			g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), time.Minute, interval).Should(BeEmpty())
			g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"))
			g.Expect(h.get("orders").Status.ConsecutiveFailures).To(BeZero())
		})
	}
}

func TestRateLimitIsWaitedOutBeforeTheNextRequest(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	before := h.tokenSecret("orders-token").Data

	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultRateLimited, RetryAfter: 5 * time.Second, Times: 1})
	h.requestRefresh("orders", "1")
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("RateLimited"))
	limited := time.Now()
	requests := h.tokenRequests(simulator.GrantClientCredentials)()
	g.Expect(h.tokenSecret("orders-token").Data).To(Equal(before))

	// Nothing is sent before Retry-After has passed...
	g.Consistently(h.tokenRequests(simulator.GrantClientCredentials), 3*time.Second, interval).Should(Equal(requests))
	// ...and the retry after it succeeds.
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(BeEmpty())
	g.Expect(time.Since(limited)).To(BeNumerically(">=", 4*time.Second))
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(Equal(requests + 1))
}

func TestDeletedOrEditedTokenSecretIsRepaired(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))

	// Edited by hand: a label removed and the token blanked.
	s := h.tokenSecret("orders-token")
	delete(s.Labels, "servicenow.snowauth.dev/connection")
	s.Data[snowv1.TokenKeyAccessToken] = []byte("")
	g.Expect(env.Client.Update(h.ctx, s)).To(Succeed())
	g.Eventually(h.accessToken("orders-token"), soon, interval).ShouldNot(BeEmpty())
	g.Eventually(func() map[string]string { return h.tokenSecret("orders-token").Labels }, soon, interval).
		Should(HaveKeyWithValue("servicenow.snowauth.dev/connection", "orders"))

	// An extra key edited: rewritten without asking ServiceNow again.
	requests := h.tokenRequests(simulator.GrantClientCredentials)()
	s = h.tokenSecret("orders-token")
	s.Data[snowv1.TokenKeyInstanceURL] = []byte("https://evil.example.com")
	g.Expect(env.Client.Update(h.ctx, s)).To(Succeed())
	g.Eventually(func() string { return string(h.tokenSecret("orders-token").Data[snowv1.TokenKeyInstanceURL]) }, soon, interval).
		Should(Equal(h.instanceURL()))
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(Equal(requests))

	// Deleted: recreated.
	g.Expect(env.Client.Delete(h.ctx, h.tokenSecret("orders-token"))).To(Succeed())
	g.Eventually(h.accessToken("orders-token"), soon, interval).ShouldNot(BeEmpty())
	g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"))
}

func TestSameNamedSecretNotOwnedByTheConnectionIsLeftAlone(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "orders-token"},
		StringData: map[string]string{"password": "belongs-to-someone-else"},
	}
	g.Expect(env.Client.Create(h.ctx, foreign)).To(Succeed())
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)

	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("False/SecretConflict"))
	g.Expect(h.conditionReason("orders", snowv1.ConditionStalled)()).To(Equal("SecretConflict"))
	g.Expect(h.condition("orders", snowv1.ConditionReady).Message).To(ContainSubstring("Secret orders-token already exists"))
	untouched := h.tokenSecret("orders-token")
	g.Expect(untouched.Data).To(Equal(map[string][]byte{"password": []byte("belongs-to-someone-else")}))
	g.Expect(untouched.OwnerReferences).To(BeEmpty())
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(BeZero(), "no token is requested that could not be stored")

	// Once the other Secret is gone, the connection takes the name at once.
	g.Expect(env.Client.Delete(h.ctx, untouched)).To(Succeed())
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
}

func TestRestartWithFreshTokensRequestsNothingAndIdleReconcilesWriteNothing(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	status := h.get("orders").Status

	h.stopManager()
	h.writes.Store(0)
	before := reconciles()
	h.startManager()

	// The new manager reconciles the connection once on start-up...
	g.Eventually(reconciles, soon, interval).Should(BeNumerically(">", before))
	// ...and finds nothing to do: no token request, no write.
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(Equal(1))
	g.Expect(h.writes.Load()).To(BeZero())

	// Unrelated changes (an annotation and a label on the connection, as
	// GitOps tools add) change nothing: the cache drops them, so they do
	// not even wake the reconciler.
	c := h.get("orders")
	patch := client.MergeFrom(c.DeepCopy())
	c.Annotations = map[string]string{"example.com/owner": "team-orders"}
	c.Labels = map[string]string{"example.com/team": "orders"}
	g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
	g.Consistently(h.writes.Load, 2*time.Second, interval).Should(BeZero())
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(Equal(1))
	g.Expect(h.get("orders").Status).To(Equal(status))
}

func TestRefreshRequestAnnotationRefreshesOnce(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	refreshed := h.get("orders").Status.LastRefreshTime.Time

	h.requestRefresh("orders", "2026-11-28T12:00:00Z")
	g.Eventually(h.tokenRequests(simulator.GrantClientCredentials), soon, interval).Should(Equal(2))
	g.Eventually(func() string { return h.get("orders").Status.LastHandledRefreshRequest }, soon, interval).
		Should(Equal("2026-11-28T12:00:00Z"))
	g.Expect(h.get("orders").Status.LastRefreshTime.Time).To(BeTemporally(">=", refreshed))
	g.Consistently(h.tokenRequests(simulator.GrantClientCredentials), 2*time.Second, interval).Should(Equal(2))
}

func TestSuspendedConnectionRequestsNothingAndSaysSo(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials, func(c *snowv1.ServiceNowConnection) {
		c.Spec.Suspend = true
	})
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("False/Suspended"))
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(BeZero())

	c := h.get("orders")
	patch := client.MergeFrom(c.DeepCopy())
	c.Spec.Suspend = false
	g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
}

func TestNoSecretMaterialInLogsEventsOrStatus(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	d := h.clientCredentials()
	d["username"], d["password"] = username, password
	h.credentials("creds", d)
	h.connection("orders", "creds", snowv1.GrantPassword)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	token := h.accessToken("orders-token")()
	g.Expect(token).NotTo(BeEmpty())

	// Drive the failure paths too: rejected credentials and a broken instance.
	d["password"] = "CANARY-wrong-password-93d1"
	h.credentials("creds", d)
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("AuthenticationFailed"))
	d["password"] = password
	h.credentials("creds", d)
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(BeEmpty())
	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultMalformedJSON})
	h.requestRefresh("orders", "leak-check")
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("InvalidResponse"))

	status, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&h.get("orders").Status)
	g.Expect(err).NotTo(HaveOccurred())
	var events eventsv1.EventList
	g.Expect(env.Client.List(h.ctx, &events, client.InNamespace(h.ns))).To(Succeed())
	g.Expect(events.Items).NotTo(BeEmpty())
	places := map[string]string{"logs": h.logs.String(), "status": toString(status), "events": toString(events.Items)}
	g.Expect(places["logs"]).To(ContainSubstring("token request failed"), "the failures were logged")
	for where, text := range places {
		for _, secret := range []string{token, clientSecret, password, "CANARY-wrong-password-93d1"} {
			g.Expect(strings.Contains(text, secret)).To(BeFalse(), "a secret value appears in the %s", where)
		}
	}
}

func TestKstatusReadsTheConnectionsState(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	d := h.clientCredentials()
	d["client_secret"] = "CANARY-wrong"
	h.credentials("bad", d)
	h.credentials("good", h.clientCredentials())
	h.connection("healthy", "good", snowv1.GrantClientCredentials)
	h.connection("rejected", "bad", snowv1.GrantClientCredentials)

	kstatus := func(name string) func() status.Status {
		return func() status.Status {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(snowv1.GroupVersion.WithKind("ServiceNowConnection"))
			g.Expect(env.Client.Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: name}, u)).To(Succeed())
			res, err := status.Compute(u)
			g.Expect(err).NotTo(HaveOccurred())
			return res.Status
		}
	}
	g.Eventually(kstatus("healthy"), soon, interval).Should(Equal(status.CurrentStatus))
	g.Eventually(kstatus("rejected"), soon, interval).Should(Equal(status.FailedStatus))

	// While the instance is down and no token was ever obtained, the
	// connection is in progress (retrying), not failed.
	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503})
	h.connection("waiting", "good", snowv1.GrantClientCredentials)
	g.Eventually(h.conditionReason("waiting", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("InstanceUnavailable"))
	g.Expect(kstatus("waiting")()).To(Equal(status.InProgressStatus))
}

func TestUnrelatedSecretsNeverEnterTheCache(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	unrelated := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "database-password"},
		StringData: map[string]string{"password": "not-snowauths-business"},
	}
	g.Expect(env.Client.Create(h.ctx, unrelated)).To(Succeed())
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))

	// The manager's cache serves the token Secret it owns...
	var owned corev1.Secret
	g.Expect(h.mgr.GetCache().Get(h.ctx, types.NamespacedName{Namespace: h.ns, Name: "orders-token"}, &owned)).To(Succeed())
	// ...but neither the unrelated Secret nor the credentials Secret.
	var list corev1.SecretList
	g.Expect(h.mgr.GetCache().List(h.ctx, &list, client.InNamespace(h.ns))).To(Succeed())
	names := []string{}
	for _, s := range list.Items {
		names = append(names, s.Name)
	}
	g.Expect(names).To(ConsistOf("orders-token"))
	err := h.mgr.GetCache().Get(h.ctx, client.ObjectKeyFromObject(unrelated), &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "an unlabelled Secret is not in the full-object cache: %v", err)
}

// eventReasons lists the reasons of the Events recorded in the harness's
// namespace.
func (h *harness) eventReasons() []string {
	var events eventsv1.EventList
	if err := env.Client.List(h.ctx, &events, client.InNamespace(h.ns)); err != nil {
		return nil
	}
	var reasons []string
	for _, e := range events.Items {
		reasons = append(reasons, e.Reason)
	}
	return reasons
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
