package plugin_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
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
		Conditions: []metav1.Condition{{
			Type: snowv1.ConditionReady, Status: metav1.ConditionFalse, Reason: snowv1.ReasonAuthorizationRequired,
			Message: "nobody has authorised snowauth for this connection yet", LastTransitionTime: *at(-time.Minute), ObservedGeneration: 1,
		}},
	}
}

func authCode(c *snowv1.ServiceNowConnection) { c.Spec.GrantType = snowv1.GrantAuthorizationCode }

// mintsLinks plays snowauth's manager: once the command asks for a link
// (the annotation), it puts link into Secret catalog-refresh-token and
// names it in status, then returns the status it wrote.
func mintsLinks(g *WithT, c *snowv1.ServiceNowConnection, link string) snowv1.ServiceNowConnectionStatus {
	ctx := context.Background()
	var requested string
	g.Eventually(func() string {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(c), c)).To(Succeed())
		requested = c.Annotations[snowv1.AnnotationAuthorizationRequestedAt]
		return requested
	}, 20*time.Second, 50*time.Millisecond).ShouldNot(BeEmpty())
	g.Expect(env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: "catalog-refresh-token"},
		Data:       map[string][]byte{snowv1.AuthorizationKeyURL: []byte(link)},
	})).To(Succeed())
	st := awaitingAuthorization()
	st.Authorization = &snowv1.AuthorizationStatus{
		LastHandledRequest: requested, LinkID: "0123abcd", LinkSecretName: "catalog-refresh-token", LinkExpiresAt: at(30 * time.Minute),
		Server: "https://snowauth.example.com",
	}
	setStatus(g, c, st)
	return st
}

func TestAuthorizeAsksForANewLinkAndPrintsItFromTheSecretNotFromStatus(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	c := createConnection(g, ns, "catalog", authCode)
	setStatus(g, c, awaitingAuthorization())

	done := make(chan result, 1)
	go func() { done <- kubectlServicenow(kubeconfig(t, ns), t0, "authorize", "catalog", "--wait=false") }()
	mintsLinks(g, c, startLink)
	var res result
	g.Eventually(done, 20*time.Second).Should(Receive(&res))
	g.Expect(res.err).NotTo(HaveOccurred())
	g.Expect(res.stdout).To(ContainSubstring("  " + startLink + "\n"))
	g.Expect(res.stdout).To(ContainSubstring("It works once and expires in 30m"))

	status := kubectlServicenow(kubeconfig(t, ns), t0, "status", "catalog")
	g.Expect(status.stdout).To(ContainSubstring("in Secret catalog-refresh-token, waiting for a person; expires in 30m"))
	g.Expect(status.stdout).NotTo(ContainSubstring(startLink), "status never shows a link")
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
	minted := mintsLinks(g, c, startLink)
	g.Consistently(done, 500*time.Millisecond).ShouldNot(Receive(), "it waits while nobody has used the link")

	// The manager, after the callback: Ready, the link completed.
	authorised := readyStatus("catalog-token")
	authorised.RefreshTokenExpiresAt = at(2400 * time.Hour)
	authorised.Authorization = &snowv1.AuthorizationStatus{
		LastHandledRequest: minted.Authorization.LastHandledRequest, CompletedLinkID: "0123abcd", AuthorizedBy: "jane.doe", AuthorizedAt: at(0),
	}
	g.Expect(env.Client.Get(t.Context(), client.ObjectKeyFromObject(c), c)).To(Succeed())
	setStatus(g, c, authorised)

	var res result
	g.Eventually(done, 20*time.Second).Should(Receive(&res))
	g.Expect(res.err).NotTo(HaveOccurred())
	g.Expect(res.stdout).To(ContainSubstring("Authorised by ServiceNow user jane.doe: Secret catalog-token holds a token"))
}

func TestAuthorizeFailsWithTheReasonWhenTheAuthorizationFailed(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	c := createConnection(g, ns, "catalog", authCode)
	setStatus(g, c, awaitingAuthorization())
	done := make(chan result, 1)
	go func() {
		done <- kubectlServicenow(kubeconfig(t, ns), time.Time{}, "authorize", "catalog", "--timeout", "30s")
	}()
	st := mintsLinks(g, c, startLink)
	st.Authorization.LinkID, st.Authorization.FailedLinkID = "", "0123abcd"
	st.Authorization.FailureMessage = `ServiceNow reported "access_denied": the person declined or could not log in.`
	g.Expect(env.Client.Get(t.Context(), client.ObjectKeyFromObject(c), c)).To(Succeed())
	setStatus(g, c, st)
	var res result
	g.Eventually(done, 20*time.Second).Should(Receive(&res))
	g.Expect(res.err).To(MatchError(ContainSubstring(`the authorization failed: ServiceNow reported "access_denied"`)))
}

// A Secret holding anything but a link snowauth would make (someone who
// may write Secrets there put it) is neither printed nor opened.
func TestAuthorizeShowsNoLinkThatIsNotSnowauths(t *testing.T) {
	for name, link := range map[string]string{
		"plain http":          "http://snowauth.example.com/authorize?state=abc.def",
		"another scheme":      "javascript:alert(1)",
		"a user name":         "https://user@snowauth.example.com/authorize?state=abc.def",
		"another path":        "https://snowauth.example.com/login?state=abc.def",
		"another server":      "https://evil.example.com/authorize?state=abc.def",
		"more than the state": "https://snowauth.example.com/authorize?state=abc.def&next=https://evil.example.com",
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ns := env.Namespace(t)
			c := createConnection(g, ns, "catalog", authCode)
			setStatus(g, c, awaitingAuthorization())
			done := make(chan result, 1)
			go func() {
				done <- kubectlServicenow(kubeconfig(t, ns), t0, "authorize", "catalog", "--wait=false", "--open")
			}()
			mintsLinks(g, c, link)
			var res result
			g.Eventually(done, 20*time.Second).Should(Receive(&res))
			g.Expect(res.err).To(MatchError(ContainSubstring("holds no authorization link snowauth would make")))
			g.Expect(res.stdout + res.stderr).NotTo(ContainSubstring(link))
		})
	}
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
	g.Expect(res.stdout).To(ContainSubstring(ns + "/catalog is authorised; its refresh token stops working in 100d (2030-04-12T10:00:00Z). Use --again"))
	g.Expect(env.Client.Get(t.Context(), client.ObjectKeyFromObject(c), c)).To(Succeed())
	g.Expect(c.Annotations).NotTo(HaveKey(snowv1.AnnotationAuthorizationRequestedAt), "no link was asked for")
}

func TestAuthorizeRefusesOtherGrants(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")
	res := kubectlServicenow(kubeconfig(t, ns), t0, "authorize", "orders")
	g.Expect(res.err).To(MatchError(ContainSubstring("only AuthorizationCode connections are authorised by a person")))
}
