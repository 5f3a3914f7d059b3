package controllers_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// A password ServiceNow rejects is sent at most spec.password.maxRejections
// times in a row (ServiceNow locks accounts after repeated failed logins):
// then snowauth stops, says so in Stalled, plans no retry, and tries once
// more only when a person changes something (a refresh request, the
// credentials Secret).
func TestARejectedPasswordIsSentAtMostMaxRejectionsTimesUntilSomethingChanges(t *testing.T) {
	var ahead atomic.Int64 // how far the reconciler's clock is ahead
	h := newHarness(t, 30*time.Minute, withClock(func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }))
	g := h.g
	d := h.clientCredentials()
	d["username"], d["password"] = username, "CANARY-wrong-password-7d1e"
	h.credentials("creds", d)
	h.connection("orders", "creds", snowv1.GrantPassword)
	requests := h.tokenRequests(simulator.GrantPassword)
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("AuthenticationFailed"))
	g.Expect(requests()).To(Equal(1))
	g.Expect(h.get("orders").Status.NextRefreshTime).NotTo(BeNil(), "a slow retry is planned after one rejection")

	// The slow retries come (the reconciler's clock moves past each), up to
	// the third rejection.
	pokes := 0
	retryTime := func() {
		ahead.Add(int64(16 * time.Minute))
		pokes++
		h.annotate("orders", "servicenow.snowauth.dev/test-poked", strconv.Itoa(pokes))
	}
	for want := 2; want <= 3; want++ {
		retryTime()
		g.Eventually(requests, soon, interval).Should(Equal(want))
	}
	g.Eventually(func() int32 { return h.get("orders").Status.PasswordRejections }, soon, interval).Should(BeEquivalentTo(3))
	stalled := h.condition("orders", snowv1.ConditionStalled)
	g.Expect(stalled).NotTo(BeNil())
	g.Expect(stalled.Message).To(HavePrefix("snowauth stopped sending the password after 3 rejections in a row, so that ServiceNow does not lock the account out"))
	g.Expect(h.get("orders").Status.NextRefreshTime).To(BeNil(), "no retry is planned")

	// Time passes: nothing more is sent.
	retryTime()
	retryTime()
	g.Consistently(requests, 2*time.Second, interval).Should(Equal(3))

	// A refresh request is worth one more try, and only one.
	h.requestRefresh("orders", "try-once-more")
	g.Eventually(requests, soon, interval).Should(Equal(4))
	retryTime()
	g.Consistently(requests, 2*time.Second, interval).Should(Equal(4))

	// The password fixed: a token, and the count starts again. (The
	// reconciler's clock back in step with ServiceNow's, which issues it.)
	ahead.Store(0)
	d["password"] = password
	h.credentials("creds", d)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.get("orders").Status.PasswordRejections).To(BeZero())
	g.Expect(h.condition("orders", snowv1.ConditionStalled)).To(BeNil())
}

// maxRejections is the connection's to set; a transient failure does not
// count as a rejection.
func TestMaxRejectionsIsTheConnectionsAndOnlyRejectionsCount(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	d := h.clientCredentials()
	d["username"], d["password"] = username, "CANARY-wrong-password-7d1e"
	h.credentials("creds", d)
	one := int32(1)
	h.connection("orders", "creds", snowv1.GrantPassword, func(c *snowv1.ServiceNowConnection) {
		c.Spec.Password = &snowv1.PasswordSpec{MaxRejections: &one}
	})
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("AuthenticationFailed"))
	g.Eventually(func() string { return h.condition("orders", snowv1.ConditionStalled).Message }, soon, interval).
		Should(HavePrefix("snowauth stopped sending the password after 1 rejections in a row"))

	h.sim.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503})
	h.requestRefresh("orders", "during-an-outage")
	g.Eventually(h.conditionReason("orders", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("InstanceUnavailable"))
	g.Expect(h.get("orders").Status.PasswordRejections).To(BeEquivalentTo(1), "an outage is no rejection")
}

// A password login's refresh token serves the later refreshes: the password
// is sent again only when ServiceNow rejects the refresh token, in the same
// reconcile, and the connection never fails meanwhile.
func TestAPasswordLoginsRefreshTokenServesLaterRefreshesAndThePasswordIsSentOnlyWhenItIsRejected(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.sim.SetRefreshTokenLifespan(time.Hour)
	d := h.clientCredentials()
	d["username"], d["password"] = username, password
	h.credentials("creds", d)
	h.connection("orders", "creds", snowv1.GrantPassword)
	passwords, refreshes := h.tokenRequests(simulator.GrantPassword), h.tokenRequests(simulator.GrantRefreshToken)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(passwords()).To(Equal(1))

	h.requestRefresh("orders", "again")
	g.Eventually(refreshes, soon, interval).Should(Equal(1))
	g.Eventually(func() string { return h.get("orders").Status.LastHandledRefreshRequest }, soon, interval).Should(Equal("again"))
	g.Expect(passwords()).To(Equal(1), "the refresh token served the refresh: no password was sent")
	g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"))

	// The instance's refresh token ends (its lifespan is an hour).
	h.sim.Advance(2 * time.Hour)
	h.requestRefresh("orders", "after the refresh token ended")
	g.Eventually(passwords, soon, interval).Should(Equal(2), "the password is sent once the refresh token is rejected")
	g.Eventually(func() string { return h.get("orders").Status.LastHandledRefreshRequest }, soon, interval).Should(Equal("after the refresh token ended"))
	g.Expect(refreshes()).To(Equal(2))
	g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"))
	g.Expect(h.condition("orders", snowv1.ConditionRefreshFailed)).To(BeNil(), "a rejected refresh token is no failure while the password works")
	g.Expect(h.get("orders").Status.PasswordRejections).To(BeZero(), "and no rejection of the password")
}
