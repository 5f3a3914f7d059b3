package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// horizon is the connection's horizon of kind, nil when it has none.
func (h *harness) horizon(name string, kind snowv1.HorizonKind) *snowv1.Horizon {
	for _, hz := range h.get(name).Status.Horizons {
		if hz.Kind == kind {
			return &hz
		}
	}
	return nil
}

// refreshTokenConnection creates the RefreshToken connection "orders" with
// a refresh token the simulator issued, plus extra credentials keys.
func (h *harness) refreshTokenConnection(extra map[string]string, mutate ...func(*snowv1.ServiceNowConnection)) {
	h.t.Helper()
	rt, err := h.sim.IssueRefreshToken(clientID, username)
	h.g.Expect(err).NotTo(HaveOccurred())
	data := h.clientCredentials()
	data["refresh_token"] = rt
	for k, v := range extra {
		data[k] = v
	}
	h.credentials("sn-rt", data)
	h.connection("orders", "sn-rt", snowv1.GrantRefreshToken, mutate...)
}

func TestARefreshTokenEndTheCredentialsSecretStatesRaisesCredentialExpiringWeeksAhead(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	end := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	h.refreshTokenConnection(map[string]string{"refresh_token_expires_at": end.Format(time.RFC3339)})

	h.g.Eventually(h.conditionReason("orders", snowv1.ConditionCredentialExpiring), 20*time.Second).Should(Equal("RefreshTokenExpiresSoon"))
	hz := h.horizon("orders", snowv1.HorizonRefreshToken)
	h.g.Expect(hz.At.Time).To(BeTemporally("==", end))
	h.g.Expect(hz.Source).To(ContainSubstring("key refresh_token_expires_at of credentials Secret sn-rt"))
	msg := h.condition("orders", snowv1.ConditionCredentialExpiring).Message
	h.g.Expect(msg).To(And(ContainSubstring(end.Format(time.RFC3339)), ContainSubstring("put a new one in key refresh_token of Secret sn-rt")))
	h.g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"), "the access token works meanwhile")
	m := h.scrape()
	h.g.Expect(h.series(m, "snowauth_credential_expiry_timestamp_seconds", map[string]string{"namespace": h.ns, "name": "orders", "kind": "RefreshToken"})).
		To(Equal(float64(end.Unix())), "the metric the alert SnowauthCredentialExpiring reads")
}

func TestARefreshTokensLifespanIsCountedFromItsFirstUseAndWarnsAsTheSimulatorsClockNearsIt(t *testing.T) {
	clock := &virtualClock{}
	h := newHarness(t, 30*time.Minute, withClock(clock.now), withClientClock(clock.now))
	h.sim.SetRefreshTokenLifespan(30 * 24 * time.Hour)
	h.refreshTokenConnection(nil, func(c *snowv1.ServiceNowConnection) {
		c.Spec.RefreshToken = &snowv1.RefreshTokenSpec{Lifespan: &metav1.Duration{Duration: 30 * 24 * time.Hour}}
	})
	h.g.Eventually(h.readyStatus("orders"), 20*time.Second).Should(Equal("True/TokenValid"))
	first := h.horizon("orders", snowv1.HorizonRefreshToken)
	h.g.Expect(first).NotTo(BeNil())
	h.g.Expect(first.At.Time).To(BeTemporally("~", clock.now().Add(30*24*time.Hour), time.Minute))
	h.g.Expect(first.Source).To(ContainSubstring("from when snowauth first used the refresh token"))
	h.g.Expect(h.condition("orders", snowv1.ConditionCredentialExpiring)).To(BeNil(), "30 days ahead is beyond the 3-week warning")
	h.g.Expect(h.tokenSecret("orders-token").Annotations).To(HaveKey("servicenow.snowauth.dev/refresh-token-first-used"))

	// Ten days on, for the manager and the instance alike.
	clock.offset.Add(int64(10 * 24 * time.Hour))
	h.sim.Advance(10 * 24 * time.Hour)
	h.requestRefresh("orders", "ten days on")
	h.g.Eventually(h.conditionReason("orders", snowv1.ConditionCredentialExpiring), 20*time.Second).Should(Equal("RefreshTokenExpiresSoon"))
	h.g.Expect(h.horizon("orders", snowv1.HorizonRefreshToken).At).To(Equal(first.At), "refreshing does not restart the count: ServiceNow never extends a refresh token")
	h.g.Expect(h.readyStatus("orders")()).To(Equal("True/TokenValid"))

	// The token Secret, which keeps the first use, is deleted: the count
	// goes on from the same start.
	h.g.Expect(env.Client.Delete(h.ctx, h.tokenSecret("orders-token"))).To(Succeed())
	h.g.Eventually(func() map[string]string {
		if sec := h.tokenSecret("orders-token"); sec != nil {
			return sec.Annotations
		}
		return nil
	}, 20*time.Second).Should(HaveKey("servicenow.snowauth.dev/refresh-token-first-used"))
	h.g.Expect(h.horizon("orders", snowv1.HorizonRefreshToken).At).To(Equal(first.At), "a deleted token Secret does not move the horizon")

	// A new refresh token (another user's, so another token) starts its
	// own count.
	rt, err := h.sim.IssueRefreshToken(clientID, appUser)
	h.g.Expect(err).NotTo(HaveOccurred())
	data := h.clientCredentials()
	data["refresh_token"] = rt
	h.credentials("sn-rt", data)
	h.g.Eventually(func() *metav1.Condition { return h.condition("orders", snowv1.ConditionCredentialExpiring) }, 20*time.Second).Should(BeNil())
	h.g.Expect(h.horizon("orders", snowv1.HorizonRefreshToken).At.Time).To(BeTemporally("~", clock.now().Add(30*24*time.Hour), time.Minute))
}

func TestAClientSecretPastItsMaximumAgeRaisesCredentialExpiring(t *testing.T) {
	clock := &virtualClock{}
	h := newHarness(t, 30*time.Minute, withClock(clock.now), withClientClock(clock.now))
	h.credentials("sn", h.clientCredentials())
	h.connection("orders", "sn", snowv1.GrantClientCredentials, func(c *snowv1.ServiceNowConnection) {
		c.Spec.ClientSecretMaxAge = &metav1.Duration{Duration: 90 * 24 * time.Hour}
		c.Spec.ExpiryWarning = &metav1.Duration{Duration: 7 * 24 * time.Hour}
	})
	h.g.Eventually(h.readyStatus("orders"), 20*time.Second).Should(Equal("True/TokenValid"))
	h.g.Expect(h.horizon("orders", snowv1.HorizonClientSecret).At.Time).To(BeTemporally("~", clock.now().Add(90*24*time.Hour), time.Minute))
	h.g.Expect(h.condition("orders", snowv1.ConditionCredentialExpiring)).To(BeNil())

	clock.offset.Add(int64(84 * 24 * time.Hour)) // 6 days before: within the 7-day warning
	h.sim.Advance(84 * 24 * time.Hour)
	h.requestRefresh("orders", "84 days on")
	h.g.Eventually(h.conditionReason("orders", snowv1.ConditionCredentialExpiring), 20*time.Second).Should(Equal("ClientSecretExpiresSoon"))
	h.g.Expect(h.condition("orders", snowv1.ConditionCredentialExpiring).Message).To(ContainSubstring("key client_secret of Secret sn"))
	h.g.Expect(h.get("orders").Status.Reason).To(Equal("TokenValid"), "a horizon is a warning, not the connection's state")
}
