package controllers_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// envtest runs no garbage collector: what a cluster's collector does with
// a token Secret follows from its owner references, which these tests
// assert.

func retain(c *snowv1.ServiceNowConnection) {
	c.Spec.TokenSecret.DeletionPolicy = snowv1.TokenSecretRetain
}

func TestRetainedTokenSecretHasNoOwnerAndIsAdoptedByAConnectionOfTheSameName(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("orders", "creds", snowv1.GrantClientCredentials, retain)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.tokenSecret("orders-token").OwnerReferences).To(BeEmpty(), "nothing makes the garbage collector delete it")

	// The connection goes; the Secret and its token stay.
	token := h.accessToken("orders-token")()
	g.Expect(env.Client.Delete(h.ctx, h.get("orders"))).To(Succeed())
	g.Eventually(func() error {
		return env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.ns, Name: "orders"}, &snowv1.ServiceNowConnection{})
	},
		soon, interval).Should(MatchError(ContainSubstring("not found")))
	g.Expect(h.accessToken("orders-token")()).To(Equal(token))

	// A connection of the same name adopts it, with no SecretConflict.
	h.connection("orders", "creds", snowv1.GrantClientCredentials, retain)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.condition("orders", snowv1.ConditionRefreshFailed)).To(BeNil())

	// A connection of another name does not: the Secret is labelled for
	// "orders".
	h.connection("billing", "creds", snowv1.GrantClientCredentials, func(c *snowv1.ServiceNowConnection) {
		c.Spec.TokenSecret.Name = "orders-token"
	})
	g.Eventually(h.readyStatus("billing"), soon, interval).Should(Equal("False/SecretConflict"))
}

func TestChangingTheDeletionPolicyAddsOrRemovesTheOwnerReference(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	conn := h.connection("orders", "creds", snowv1.GrantClientCredentials)
	g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	owned := func() []metav1.OwnerReference { return h.tokenSecret("orders-token").OwnerReferences }
	g.Expect(owned()).To(ConsistOf(And(HaveField("UID", conn.UID), HaveField("Controller", HaveValue(BeTrue())))),
		"Delete, the default: the Secret goes with the connection")
	requests := h.tokenRequests("client_credentials")()

	for _, policy := range []snowv1.TokenSecretDeletionPolicy{snowv1.TokenSecretRetain, snowv1.TokenSecretDelete} {
		c := h.get("orders")
		patch := client.MergeFrom(c.DeepCopy())
		c.Spec.TokenSecret.DeletionPolicy = policy
		g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
		if policy == snowv1.TokenSecretRetain {
			g.Eventually(owned, soon, interval).Should(BeEmpty())
		} else {
			g.Eventually(owned, soon, interval).Should(ConsistOf(HaveField("UID", conn.UID)))
		}
		g.Eventually(h.readyStatus("orders"), soon, interval).Should(Equal("True/TokenValid"))
	}
	// Each spec change asked for a token, as any spec change does.
	g.Expect(h.tokenRequests("client_credentials")()).To(BeNumerically("<=", requests+2))
}

func TestAdmissionRefusesAnUnknownDeletionPolicy(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	c := &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "orders"},
		Spec: snowv1.ServiceNowConnectionSpec{
			GrantType: snowv1.GrantClientCredentials, CredentialsSecretRef: snowv1.SecretReference{Name: "creds"},
			TokenSecret: snowv1.TokenSecretSpec{DeletionPolicy: "Orphan"},
		},
	}
	h.g.Expect(env.Client.Create(h.ctx, c)).To(MatchError(ContainSubstring(`supported values: "Delete", "Retain"`)))
}
