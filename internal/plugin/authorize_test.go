package plugin_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

const startLink = "https://snowauth.example.com/authorize?state=abc.def"

// awaitingAuthorization is the status of an AuthorizationCode connection
// nobody has authorised yet.
func awaitingAuthorization() snowv1.ServiceNowConnectionStatus {
	return snowv1.ServiceNowConnectionStatus{
		ObservedGeneration: 1,
		AuthorizationURL:   startLink,
		Conditions: []metav1.Condition{{
			Type: snowv1.ConditionReady, Status: metav1.ConditionFalse, Reason: snowv1.ReasonAuthorizationRequired,
			Message: "nobody has authorised snowauth for this connection yet", LastTransitionTime: *at(-time.Minute), ObservedGeneration: 1,
		}},
	}
}

func authCode(c *snowv1.ServiceNowConnection) { c.Spec.GrantType = snowv1.GrantAuthorizationCode }

func TestAuthorizePrintsTheStartLink(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	c := createConnection(g, ns, "catalog", authCode)
	setStatus(g, c, awaitingAuthorization())

	res := kubectlServicenow(kubeconfig(t, ns), t0, "authorize", "catalog", "--wait=false")
	g.Expect(res.err).NotTo(HaveOccurred())
	g.Expect(res.stdout).To(ContainSubstring("  " + startLink + "\n"))

	status := kubectlServicenow(kubeconfig(t, ns), t0, "status", "catalog")
	g.Expect(status.stdout).To(ContainSubstring("Authorize at:"))
	g.Expect(status.stdout).To(ContainSubstring(startLink))
}

func TestAuthorizeWaitsUntilThePersonHasAuthorised(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	c := createConnection(g, ns, "catalog", authCode)
	setStatus(g, c, awaitingAuthorization())

	done := make(chan result, 1)
	go func() {
		done <- kubectlServicenow(kubeconfig(t, ns), time.Time{}, "authorize", "catalog", "--timeout", "30s")
	}()
	g.Consistently(done, 500*time.Millisecond).ShouldNot(Receive(), "it waits while the link is still needed")

	// The operator, after the callback: Ready, no link.
	authorised := readyStatus("catalog-token")
	authorised.RefreshTokenExpiresAt = at(2400 * time.Hour)
	g.Expect(env.Client.Get(t.Context(), client.ObjectKeyFromObject(c), c)).To(Succeed())
	setStatus(g, c, authorised)

	var res result
	g.Eventually(done, 20*time.Second).Should(Receive(&res))
	g.Expect(res.err).NotTo(HaveOccurred())
	g.Expect(res.stdout).To(ContainSubstring("Authorised: Secret catalog-token holds a token"))
}

func TestAuthorizeSaysWhenNothingIsNeeded(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	c := createConnection(g, ns, "catalog", authCode)
	st := readyStatus("catalog-token")
	st.RefreshTokenExpiresAt = at(2400 * time.Hour)
	setStatus(g, c, st)
	res := kubectlServicenow(kubeconfig(t, ns), t0, "authorize", "catalog")
	g.Expect(res.err).NotTo(HaveOccurred())
	g.Expect(res.stdout).To(ContainSubstring(ns + "/catalog is authorised; its refresh token stops working in 100d"))
}

func TestAuthorizeRefusesOtherGrants(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")
	res := kubectlServicenow(kubeconfig(t, ns), t0, "authorize", "orders")
	g.Expect(res.err).To(MatchError(ContainSubstring("only AuthorizationCode connections are authorised by a person")))
}
