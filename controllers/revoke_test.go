package controllers_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

func revokeOnDelete(c *snowv1.ServiceNowConnection) { c.Spec.RevokeOnDelete = true }

// readyConnection creates credentials for the client credentials grant and
// connection name with them, and waits until it is Ready.
func (h *harness) readyConnection(name string, mutate ...func(*snowv1.ServiceNowConnection)) {
	h.t.Helper()
	h.credentials("creds", h.clientCredentials())
	h.connection(name, "creds", snowv1.GrantClientCredentials, mutate...)
	h.g.Eventually(h.readyStatus(name), soon, interval).Should(Equal("True/TokenValid"))
}

// finalizers are the connection's finalizers, nil once it is gone.
func (h *harness) finalizers(name string) func() []string {
	return func() []string {
		var c snowv1.ServiceNowConnection
		if err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, &c); err != nil {
			return nil
		}
		return c.Finalizers
	}
}

// gone says the connection no longer exists.
func (h *harness) gone(name string) func() bool {
	return func() bool {
		err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, &snowv1.ServiceNowConnection{})
		return apierrors.IsNotFound(err)
	}
}

// deleteConnection deletes the connection as kubectl delete does.
func (h *harness) deleteConnection(name string) {
	h.t.Helper()
	h.g.Expect(env.Client.Delete(h.ctx, h.get(name))).To(Succeed())
}

// eventNotes lists the notes of the Events with reason in the namespace.
func (h *harness) eventNotes(reason string) []string {
	var events eventsv1.EventList
	if err := env.Client.List(h.ctx, &events, client.InNamespace(h.ns)); err != nil {
		return nil
	}
	var notes []string
	for _, e := range events.Items {
		if e.Reason == reason {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

// works says whether ServiceNow accepts an access token on its APIs.
func (h *harness) works(token string) bool {
	h.t.Helper()
	c := testenv.ClientFor(h.t, h.sim, 5*time.Second)
	instance, err := c.ResolveInstance(h.instanceURL())
	h.g.Expect(err).NotTo(HaveOccurred())
	_, err = c.CurrentUser(h.ctx, instance, token)
	if err != nil {
		h.g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindAuthenticationFailed), "the instance answered: %v", err)
	}
	return err == nil
}

// refreshes says whether ServiceNow still accepts a refresh token.
func (h *harness) refreshes(refreshToken string) bool {
	h.t.Helper()
	c := testenv.ClientFor(h.t, h.sim, 5*time.Second)
	instance, err := c.ResolveInstance(h.instanceURL())
	h.g.Expect(err).NotTo(HaveOccurred())
	_, err = c.Token(h.ctx, servicenow.TokenRequest{Instance: instance, Grant: servicenow.GrantRefreshToken,
		Credentials: servicenow.Credentials{ClientID: clientID, ClientSecret: clientSecret, RefreshToken: refreshToken}})
	return err == nil
}

// expectNoTokensShown checks that none of tokens is in the manager's logs,
// the namespace's Events, or the connection's status (when it exists).
func (h *harness) expectNoTokensShown(name string, tokens ...string) {
	h.t.Helper()
	var events eventsv1.EventList
	h.g.Expect(env.Client.List(h.ctx, &events, client.InNamespace(h.ns))).To(Succeed())
	shown := map[string]string{"logs": h.logs.String()}
	for _, e := range events.Items {
		shown["Event "+e.Reason] += e.Note
	}
	var c snowv1.ServiceNowConnection
	if env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: name}, &c) == nil {
		st, _ := json.Marshal(c.Status)
		shown["status"] = string(st)
	}
	for where, text := range shown {
		for _, tok := range tokens {
			h.g.Expect(tok).NotTo(BeEmpty())
			h.g.Expect(strings.Contains(text, tok)).To(BeFalse(), "%s shows a token", where)
		}
	}
}

func TestDeletingWithRevokeOnDeleteRevokesBothTokensOfAnAuthorizationCodeConnection(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withAuthorization())
	g := h.g
	link := h.authCodeConnection(revokeOnDelete)
	g.Expect(h.open(h.login(link, true)).status).To(Equal(http.StatusOK))
	g.Eventually(h.readyStatus("catalog"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.finalizers("catalog")()).To(ConsistOf(snowv1.FinalizerRevoke))
	access, refresh := h.accessToken("catalog-token")(), string(h.refreshTokenSecret().Data["refresh_token"])
	g.Expect(h.works(access)).To(BeTrue())

	h.deleteConnection("catalog")

	g.Eventually(h.gone("catalog"), soon, interval).Should(BeTrue())
	g.Expect(h.sim.Revocations(simulator.RevokedAccessToken)).To(Equal(1))
	g.Expect(h.sim.Revocations(simulator.RevokedRefreshToken)).To(Equal(1))
	g.Expect(h.works(access)).To(BeFalse(), "the access token no longer works")
	g.Expect(h.refreshes(refresh)).To(BeFalse(), "the refresh token no longer works")
	g.Eventually(func() []string { return h.eventNotes("TokenRevoked") }, soon, interval).Should(ConsistOf(
		HavePrefix("revoked the access token in Secret catalog-token at "+h.instanceURL()),
		HavePrefix("revoked the refresh token in Secret catalog-refresh-token at "+h.instanceURL()),
	))
	g.Expect(h.eventNotes(snowv1.ReasonRevocationFailed)).To(BeEmpty())
	h.expectNoTokensShown("catalog", access, refresh)
}

func TestDeletingWhileServiceNowIsUnreachableEndsAfterTheBoundWithAWarning(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withRevokeTimeout(3*time.Second))
	g := h.g
	h.readyConnection("orders", revokeOnDelete)
	access := h.accessToken("orders-token")()
	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503, Path: "/oauth_revoke_token.do"})
	deleted := time.Now()

	h.deleteConnection("orders")

	g.Eventually(h.gone("orders"), soon, interval).Should(BeTrue())
	// The deletion timestamp has whole seconds: the bound ends up to a
	// second before deleted + 3s.
	g.Expect(time.Since(deleted)).To(BeNumerically(">=", 2*time.Second), "the deletion waited for the bound")
	g.Expect(len(h.sim.RevocationLog())).To(BeNumerically(">=", 2), "the revocation was retried")
	g.Expect(h.sim.Revocations("")).To(BeZero())
	g.Expect(h.works(access)).To(BeTrue(), "nothing was revoked")
	g.Eventually(func() []string { return h.eventNotes(snowv1.ReasonRevocationFailed) }, soon, interval).Should(ConsistOf(SatisfyAll(
		ContainSubstring("could not revoke the access token in Secret orders-token (the instance is unavailable (HTTP 503))"),
		ContainSubstring("removed finalizer servicenow.snowauth.dev/revoke, since the 3s after the deletion passed (--revoke-on-delete-timeout)"),
	)))
	g.Expect(h.eventNotes("TokenRevoked")).To(BeEmpty())
	h.expectNoTokensShown("orders", access)
}

func TestDeletingWhileTheManagerIsStoppedEndsWithOneQuickAttemptWhenItComesBackAfterTheBound(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withRevokeTimeout(time.Minute))
	g := h.g
	h.readyConnection("orders", revokeOnDelete)
	access := h.accessToken("orders-token")()
	h.stopManager()

	h.deleteConnection("orders")
	g.Expect(h.get("orders").DeletionTimestamp).NotTo(BeNil(), "the connection waits for the manager")
	g.Expect(h.gone("orders")()).To(BeFalse())

	// The manager comes back two minutes later, to an instance that does
	// not answer: one attempt, then the connection goes.
	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultHang, Path: "/oauth_revoke_token.do"})
	h.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	h.startManager()

	g.Eventually(h.gone("orders"), soon, interval).Should(BeTrue())
	g.Expect(h.sim.RevocationLog()).To(HaveLen(1), "one attempt")
	g.Eventually(func() []string { return h.eventNotes(snowv1.ReasonRevocationFailed) }, soon, interval).Should(ConsistOf(SatisfyAll(
		ContainSubstring("could not revoke the access token in Secret orders-token (no complete answer"),
		ContainSubstring("since the 1m0s after the deletion passed"),
	)))
	h.expectNoTokensShown("orders", access)
}

func TestWithoutRevokeOnDeleteThereIsNoFinalizerAndTurningItOffRemovesIt(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.readyConnection("orders", func(c *snowv1.ServiceNowConnection) {
		c.Labels = map[string]string{"team": "payments"}
		c.Annotations = map[string]string{"example.com/owner": "team-a"}
	})
	g.Expect(h.finalizers("orders")()).To(BeEmpty())

	c := h.get("orders")
	patch := client.MergeFrom(c.DeepCopy())
	c.Spec.RevokeOnDelete = true
	g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
	g.Eventually(h.finalizers("orders"), soon, interval).Should(ConsistOf(snowv1.FinalizerRevoke))
	// The finalizer is patched in alone: what the cache does not hold
	// (labels, other annotations) is left as it was.
	g.Expect(h.get("orders").Labels).To(Equal(map[string]string{"team": "payments"}))
	g.Expect(h.get("orders").Annotations).To(HaveKeyWithValue("example.com/owner", "team-a"))

	c = h.get("orders")
	patch = client.MergeFrom(c.DeepCopy())
	c.Spec.RevokeOnDelete = false
	g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
	g.Eventually(h.finalizers("orders"), soon, interval).Should(BeEmpty())

	access := h.accessToken("orders-token")()
	h.deleteConnection("orders")
	g.Expect(h.gone("orders")()).To(BeTrue(), "nothing holds the deletion")
	g.Expect(h.sim.RevocationLog()).To(BeEmpty())
	g.Expect(h.works(access)).To(BeTrue())
}

// ServiceNow hands one access token to every request of an OAuth client
// and user: a connection deleted with revokeOnDelete does not revoke what
// another connection holds.
func TestDeletingDoesNotRevokeAnAccessTokenAnotherConnectionHolds(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.readyConnection("orders", revokeOnDelete)
	h.connection("crm", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("crm"), soon, interval).Should(Equal("True/TokenValid"))
	access := h.accessToken("orders-token")()
	g.Expect(h.accessToken("crm-token")()).To(Equal(access), "the simulator reuses the token, as ServiceNow does")

	h.deleteConnection("orders")

	g.Eventually(h.gone("orders"), soon, interval).Should(BeTrue())
	g.Expect(h.sim.RevocationLog()).To(BeEmpty())
	g.Expect(h.works(access)).To(BeTrue())
	g.Expect(h.eventNotes("RevocationSkipped")).To(ConsistOf(
		ContainSubstring("did not revoke the access token in Secret orders-token: connections " + h.ns + "/crm hold the same token")))
}

func TestARevokeRequestRevokesTheAccessTokenAndStoresANewOne(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.readyConnection("orders")
	h.connection("crm", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("crm"), soon, interval).Should(Equal("True/TokenValid"))
	leaked := h.accessToken("orders-token")()
	before := h.tokenRequests(simulator.GrantClientCredentials)()

	h.annotate("orders", snowv1.AnnotationRevokeRequestedAt, "leak-1")

	g.Eventually(func() string { return h.get("orders").Status.LastHandledRevokeRequest }, soon, interval).Should(Equal("leak-1"))
	fresh := h.accessToken("orders-token")()
	g.Expect(fresh).NotTo(Equal(leaked), "the token Secret holds a new token")
	g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"))
	g.Expect(h.works(leaked)).To(BeFalse(), "the leaked token no longer works")
	g.Expect(h.works(fresh)).To(BeTrue())
	g.Expect(h.sim.Revocations(simulator.RevokedAccessToken)).To(Equal(1))
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(Equal(before + 1))
	g.Expect(h.eventNotes("TokenRevoked")).To(ConsistOf(SatisfyAll(
		HavePrefix("revoked the access token in Secret orders-token at "+h.instanceURL()+" (revoke request leak-1); a new token replaces it"),
		ContainSubstring("connections "+h.ns+"/crm held the same token"),
	)))
	// The same request again is not a new one.
	h.annotate("orders", "example.com/touch", "1")
	g.Consistently(func() int { return h.sim.Revocations("") }, time.Second, interval).Should(Equal(1))
	h.expectNoTokensShown("orders", leaked, fresh)
}

func TestARevokeRequestThatFailsIsRetriedAndAsksForNoTokenUntilItSucceeds(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.readyConnection("orders")
	leaked := h.accessToken("orders-token")()
	before := h.tokenRequests(simulator.GrantClientCredentials)()
	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503, Path: "/oauth_revoke_token.do", Times: 1})

	h.annotate("orders", snowv1.AnnotationRevokeRequestedAt, "leak-1")

	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal(snowv1.ReasonRevocationFailed))
	g.Expect(h.condition("orders", snowv1.ConditionRefreshFailed).Message).To(ContainSubstring(
		"could not revoke the access token in Secret orders-token for revoke request leak-1 (InstanceUnavailable: the instance is unavailable (HTTP 503))"))
	g.Expect(h.conditionReason("orders", snowv1.ConditionReconciling)()).To(Equal(snowv1.ReasonRevocationFailed))
	g.Expect(h.tokenRequests(simulator.GrantClientCredentials)()).To(Equal(before), "no token while the leaked one is valid")
	g.Eventually(func() []string { return h.eventNotes(snowv1.ReasonRevocationFailed) }, soon, interval).ShouldNot(BeEmpty())

	// The retry, after its backoff, revokes it and stores a new token.
	g.Eventually(func() string { return h.get("orders").Status.LastHandledRevokeRequest }, soon, interval).Should(Equal("leak-1"))
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(BeEmpty())
	g.Expect(h.accessToken("orders-token")()).NotTo(Equal(leaked))
	g.Expect(h.works(leaked)).To(BeFalse())
	h.expectNoTokensShown("orders", leaked, h.accessToken("orders-token")())
}

// ServiceNow's answer to a revocation does not say whether it took effect:
// a token the instance still takes is not revoked.
func TestARevokeRequestTheInstanceDoesNotHonourIsNotTakenForARevocation(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.readyConnection("orders")
	leaked := h.accessToken("orders-token")()
	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultResponse, Status: 200, Path: "/oauth_revoke_token.do"})

	h.annotate("orders", snowv1.AnnotationRevokeRequestedAt, "leak-1")

	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal(snowv1.ReasonRevocationFailed))
	g.Expect(h.condition("orders", snowv1.ConditionRefreshFailed).Message).To(ContainSubstring(
		"accepted the revocation but still accepts the token"))
	g.Expect(h.get("orders").Status.LastHandledRevokeRequest).To(BeEmpty())
	g.Expect(h.eventNotes("TokenRevoked")).To(BeEmpty())
	g.Expect(h.works(leaked)).To(BeTrue())

	h.sim.ClearFault()
	g.Eventually(func() string { return h.get("orders").Status.LastHandledRevokeRequest }, soon, interval).Should(Equal("leak-1"))
	g.Expect(h.works(leaked)).To(BeFalse())
}

func TestAReauthorizationRevokesTheSupersededRefreshToken(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withAuthorization())
	g := h.g
	g.Expect(h.open(h.login(h.authCodeConnection(), true)).status).To(Equal(http.StatusOK))
	g.Eventually(h.readyStatus("catalog"), soon, interval).Should(Equal("True/TokenValid"))
	first := string(h.refreshTokenSecret().Data["refresh_token"])

	g.Expect(h.open(h.login(h.requestLink("catalog"), true)).status).To(Equal(http.StatusOK))

	g.Eventually(func() string { return string(h.refreshTokenSecret().Data["refresh_token"]) }, soon, interval).ShouldNot(Equal(first))
	second := string(h.refreshTokenSecret().Data["refresh_token"])
	g.Eventually(func() int { return h.sim.Revocations(simulator.RevokedRefreshToken) }, soon, interval).Should(Equal(1))
	g.Expect(h.refreshes(first)).To(BeFalse(), "the superseded refresh token no longer works")
	g.Expect(h.refreshes(second)).To(BeTrue())
	g.Expect(h.eventNotes("TokenRevoked")).To(ConsistOf(
		HavePrefix("revoked the superseded refresh token in Secret catalog-refresh-token at " + h.instanceURL() + " (replaced by the authorization of link ")))

	// A revocation that fails is a Warning, never the connection's failure.
	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503, Path: "/oauth_revoke_token.do"})
	g.Expect(h.open(h.login(h.requestLink("catalog"), true)).status).To(Equal(http.StatusOK))
	g.Eventually(func() []string { return h.eventNotes(snowv1.ReasonRevocationFailed) }, soon, interval).Should(ConsistOf(
		ContainSubstring("could not revoke the superseded refresh token in Secret catalog-refresh-token (the instance is unavailable (HTTP 503)): it stays valid")))
	g.Expect(h.refreshes(second)).To(BeTrue())
	g.Expect(h.readyStatus("catalog")()).To(Equal("True/TokenValid"))
	g.Expect(h.condition("catalog", snowv1.ConditionRefreshFailed)).To(BeNil())
	h.expectNoTokensShown("catalog", first, second, h.accessToken("catalog-token")())
}
