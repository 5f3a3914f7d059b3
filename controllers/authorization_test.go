package controllers_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// withAuthorization runs the authorization server of the AuthorizationCode
// grant beside the harness's manager, on loopback, and registers its
// callback as the simulator client's Redirect URL.
func withAuthorization() harnessOption {
	return func(h *harness) {
		handler := http.NotFoundHandler()
		h.auth = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
		h.t.Cleanup(h.auth.Close)
		signer, err := authserver.NewSigner(authserver.NewKey())
		h.g.Expect(err).NotTo(HaveOccurred())
		external, _ := url.Parse(h.auth.URL)
		h.links = &authserver.Links{Signer: signer, ExternalURL: external}
		h.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser, RedirectURL: h.links.RedirectURI()})
		h.authSrv = &authserver.Server{Client: env.Client, APIReader: env.Client, Tokens: testenv.ClientFor(h.t, h.sim, time.Second), Links: h.links}
		handler = h.authSrv.Handler()
	}
}

// browser is what a person's browser does, without following redirects so
// the test sees each step.
func (h *harness) browser() *http.Client {
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.sim.CertPool(), MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

// page is an answer of the authorization server as a browser shows it.
type page struct {
	status int
	header http.Header
	body   string
}

func (h *harness) open(u string) page {
	h.t.Helper()
	resp, err := h.browser().Get(u)
	h.g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(b)}
}

// login follows a start link to ServiceNow's login page, logs in there as
// the integration user (allow or deny), and returns the callback URL
// ServiceNow redirects the browser to.
func (h *harness) login(startLink string, allow bool) string {
	h.t.Helper()
	start := h.open(startLink)
	h.g.Expect(start.status).To(Equal(http.StatusFound), "the start link redirects to ServiceNow: %s", start.body)
	loc := start.header.Get("Location")
	h.g.Expect(loc).To(HavePrefix(h.instanceURL() + "/oauth_auth.do?"))
	cb, err := h.sim.Login(h.ctx, h.browser(), loc, username, password, allow)
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(cb.String()).To(HavePrefix(h.links.RedirectURI()))
	return cb.String()
}

// authorizationURL waits for a start link in status and returns it.
func (h *harness) authorizationURL(name string) string {
	h.t.Helper()
	var link string
	h.g.Eventually(func() string {
		link = h.get(name).Status.AuthorizationURL
		return link
	}, soon, interval).ShouldNot(BeEmpty())
	return link
}

// authCodeConnection creates credentials and an AuthorizationCode
// connection named catalog, and waits for its first start link.
func (h *harness) authCodeConnection(mutate ...func(*snowv1.ServiceNowConnection)) string {
	h.credentials("creds", h.clientCredentials())
	h.connection("catalog", "creds", snowv1.GrantAuthorizationCode, mutate...)
	h.g.Eventually(h.readyStatus("catalog"), soon, interval).Should(Equal("False/AuthorizationRequired"))
	return h.authorizationURL("catalog")
}

func (h *harness) refreshTokenSecret() *corev1.Secret { return h.tokenSecret("catalog-refresh-token") }

func TestAuthorizationCodeFlowFromLinkToRefreshAndBack(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withAuthorization())
	g := h.g
	link := h.authCodeConnection(func(c *snowv1.ServiceNowConnection) {
		c.Spec.AuthorizationCode = &snowv1.AuthorizationCodeSpec{
			RefreshTokenLifespan: &metav1.Duration{Duration: 2 * time.Hour},
			ReauthorizeBefore:    &metav1.Duration{Duration: time.Hour},
		}
	})
	g.Expect(link).To(HavePrefix(h.auth.URL + "/authorize?state="))
	g.Expect(h.conditionReason("catalog", snowv1.ConditionStalled)()).To(Equal("AuthorizationRequired"))
	g.Expect(h.condition("catalog", snowv1.ConditionReady).Message).To(ContainSubstring("status.authorizationURL"))

	// A person opens the link, logs in to ServiceNow and comes back.
	callback := h.login(link, true)
	done := h.open(callback)
	g.Expect(done.status).To(Equal(http.StatusOK))
	g.Expect(done.body).To(ContainSubstring("Connection " + h.ns + "/catalog is authorised"))
	g.Expect(done.header.Get("Cache-Control")).To(Equal("no-store"))
	g.Expect(done.header.Get("Referrer-Policy")).To(Equal("no-referrer"))
	cbURL, _ := url.Parse(callback)
	g.Expect(done.body).NotTo(ContainSubstring(cbURL.Query().Get("code")), "the page shows no code")
	g.Expect(done.body).NotTo(ContainSubstring(cbURL.Query().Get("state")), "the page shows no state")

	// snowauth takes over: a token from the refresh token, in the token Secret.
	g.Eventually(h.readyStatus("catalog"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.tokenRequests(simulator.GrantAuthorizationCode)()).To(Equal(1))
	g.Expect(h.tokenRequests(simulator.GrantRefreshToken)()).To(Equal(1))
	stored := h.refreshTokenSecret()
	g.Expect(stored).NotTo(BeNil())
	g.Expect(metav1.IsControlledBy(stored, h.get("catalog"))).To(BeTrue())
	g.Expect(stored.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "snowauth"))
	refreshToken := string(stored.Data["refresh_token"])
	g.Expect(refreshToken).NotTo(BeEmpty())
	g.Expect(h.tokenSecret("catalog-token").Data).NotTo(HaveKey("refresh_token"), "applications never see the refresh token")
	st := h.get("catalog").Status
	g.Expect(st.AuthorizationURL).To(BeEmpty(), "no link while nothing needs authorising")
	g.Expect(st.RefreshTokenExpiresAt.Time).To(BeTemporally("~", time.Now().Add(2*time.Hour), time.Minute))
	g.Expect(h.condition("catalog", snowv1.ConditionRefreshTokenExpiring)).To(BeNil())
	g.Eventually(h.eventReasons, soon, interval).Should(ContainElement("TokenIssued"))

	// Inside the warning window a person is asked to authorise again, while
	// the token keeps working.
	c := h.get("catalog")
	patch := client.MergeFrom(c.DeepCopy())
	c.Spec.AuthorizationCode.ReauthorizeBefore = &metav1.Duration{Duration: 3 * time.Hour}
	g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
	g.Eventually(h.conditionReason("catalog", snowv1.ConditionRefreshTokenExpiring), soon, interval).Should(Equal("RefreshTokenExpiresSoon"))
	g.Expect(h.readyStatus("catalog")()).To(Equal("True/TokenValid"))
	g.Expect(h.authorizationURL("catalog")).NotTo(Equal(link), "a fresh link, not the used one")

	// ServiceNow rejects the refresh token (expired or revoked):
	// RefreshTokenRejected with a link, the access token left in place.
	before := h.tokenSecret("catalog-token").Data
	h.sim.RevokeToken(refreshToken)
	h.requestRefresh("catalog", "after-revocation")
	g.Eventually(h.conditionReason("catalog", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("RefreshTokenRejected"))
	g.Expect(h.conditionReason("catalog", snowv1.ConditionStalled)()).To(Equal("RefreshTokenRejected"))
	g.Expect(h.condition("catalog", snowv1.ConditionRefreshFailed).Message).To(ContainSubstring("rejected the stored refresh token"))
	g.Expect(h.tokenSecret("catalog-token").Data).To(Equal(before))
	g.Eventually(func() string { return h.authorizationURL("catalog") }, soon, interval).ShouldNot(BeEmpty())

	// An unrelated change to the connection does not send the rejected
	// refresh token again: only a new authorization (or the slow retry) does.
	rejected := h.tokenRequests(simulator.GrantRefreshToken)()
	h.annotate("catalog", "example.com/owner", "team-a")
	g.Consistently(h.tokenRequests(simulator.GrantRefreshToken), 3*time.Second, interval).Should(Equal(rejected))

	// Authorising again replaces the refresh token; the connection recovers.
	again := h.open(h.login(h.authorizationURL("catalog"), true))
	g.Expect(again.status).To(Equal(http.StatusOK))
	g.Eventually(h.conditionReason("catalog", snowv1.ConditionRefreshFailed), soon, interval).Should(BeEmpty())
	g.Expect(string(h.refreshTokenSecret().Data["refresh_token"])).NotTo(Equal(refreshToken))
	g.Expect(h.readyStatus("catalog")()).To(Equal("True/TokenValid"))
}

// TestAuthorizationRejectsBadInputAndStoresNothing holds one case per bad
// input at the start link or the callback: each gets a plain error page,
// no refresh-token Secret is written, and the connection still asks for
// authorization.
func TestAuthorizationRejectsBadInputAndStoresNothing(t *testing.T) {
	cases := []struct {
		name   string
		act    func(h *harness, link string) page
		status int
		says   string
		event  string
		// authorizedFirst: the case completes one good authorization
		// before its bad input.
		authorizedFirst bool
	}{
		{
			name: "refuses a forged state",
			act: func(h *harness, link string) page {
				return h.open(h.auth.URL + "/authorize?state=" + url.QueryEscape("eyJucyI6ImEifQ.Zm9yZ2Vk"))
			},
			status: http.StatusBadRequest, says: "was not issued by this snowauth",
		},
		{
			name: "refuses an expired state",
			act: func(h *harness, link string) page {
				c := h.get("catalog")
				old := authserver.State{Namespace: c.Namespace, Name: c.Name, UID: string(c.UID), Nonce: "n", Expires: time.Now().Add(-time.Minute).Unix()}
				return h.open(h.auth.URL + "/authorize?state=" + url.QueryEscape(h.links.Signer.Sign(old)))
			},
			status: http.StatusBadRequest, says: "has expired",
		},
		{
			name: "refuses the state of a connection that was deleted and created again",
			act: func(h *harness, link string) page {
				callback := h.login(link, true)
				h.g.Expect(env.Client.Delete(h.ctx, h.get("catalog"))).To(Succeed())
				h.connection("catalog", "creds", snowv1.GrantAuthorizationCode)
				return h.open(callback)
			},
			status: http.StatusGone, says: "no longer exists",
		},
		{
			name: "refuses a callback for a connection deleted mid-flow",
			act: func(h *harness, link string) page {
				callback := h.login(link, true)
				h.g.Expect(env.Client.Delete(h.ctx, h.get("catalog"))).To(Succeed())
				return h.open(callback)
			},
			status: http.StatusGone, says: "no longer exists",
		},
		{
			name: "refuses a callback after the credentials changed mid-flow",
			act: func(h *harness, link string) page {
				callback := h.login(link, true)
				d := h.clientCredentials()
				d["client_secret"] = "CANARY-rotated"
				h.credentials("creds", d)
				return h.open(callback)
			},
			status: http.StatusConflict, says: "changed since this link was made", event: "AuthorizationFailed",
		},
		{
			name: "reports a person who declined at ServiceNow",
			act: func(h *harness, link string) page {
				return h.open(h.login(link, false))
			},
			status: http.StatusForbidden, says: "access_denied", event: "AuthorizationDenied",
		},
		{
			name: "refuses a callback without a code",
			act: func(h *harness, link string) page {
				cb, _ := url.Parse(h.login(link, true))
				q := cb.Query()
				q.Del("code")
				cb.RawQuery = q.Encode()
				return h.open(cb.String())
			},
			status: http.StatusBadRequest, says: "carries no authorization code",
		},
		{
			name: "refuses a code whose PKCE verifier does not match (a code from another flow)",
			act: func(h *harness, link string) page {
				// Two links, two logins: present the second flow's code
				// with the first flow's state.
				first, _ := url.Parse(h.login(link, true))
				c := h.get("catalog")
				creds := h.tokenSecret("creds")
				other, _ := h.links.StartURL(c, creds.ResourceVersion, time.Now())
				second, _ := url.Parse(h.login(other, true))
				q := first.Query()
				q.Set("code", second.Query().Get("code"))
				first.RawQuery = q.Encode()
				return h.open(first.String())
			},
			status: http.StatusBadGateway, says: "did not accept the authorization", event: "AuthorizationFailed",
		},
		{
			name: "refuses a code that was used already",
			act: func(h *harness, link string) page {
				first, _ := url.Parse(h.login(link, true))
				h.g.Expect(h.open(first.String()).status).To(Equal(http.StatusOK))
				// A new link (as after a rejection) with the old, used code.
				c := h.get("catalog")
				other, _ := h.links.StartURL(c, h.tokenSecret("creds").ResourceVersion, time.Now())
				otherURL, _ := url.Parse(other)
				q := first.Query()
				q.Set("state", otherURL.Query().Get("state"))
				first.RawQuery = q.Encode()
				return h.open(first.String())
			},
			status: http.StatusBadGateway, says: "did not accept the authorization", event: "AuthorizationFailed",
			authorizedFirst: true,
		},
		{
			name: "refuses a start link used a second time",
			act: func(h *harness, link string) page {
				h.g.Expect(h.open(h.login(link, true)).status).To(Equal(http.StatusOK))
				return h.open(link)
			},
			status: http.StatusConflict, says: "was used already",
			authorizedFirst: true,
		},
		{
			name: "refuses a replayed callback",
			act: func(h *harness, link string) page {
				callback := h.login(link, true)
				h.g.Expect(h.open(callback).status).To(Equal(http.StatusOK))
				return h.open(callback)
			},
			status: http.StatusConflict, says: "was used already",
			authorizedFirst: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 30*time.Minute, withAuthorization())
			link := h.authCodeConnection()
			got := tc.act(h, link)

			h.g.Expect(got.status).To(Equal(tc.status), "page: %s", got.body)
			h.g.Expect(got.body).To(ContainSubstring(tc.says))
			h.g.Expect(got.header.Get("Cache-Control")).To(Equal("no-store"))
			h.g.Expect(got.header.Get("Content-Type")).To(HavePrefix("text/html"))
			h.g.Expect(got.body).NotTo(ContainSubstring("<script"), "nothing is reflected unescaped")
			// A refresh token is stored only after ServiceNow accepts a code.
			accepted := 0
			for _, r := range h.sim.TokenRequestLog() {
				if r.Grant == simulator.GrantAuthorizationCode && r.Status == http.StatusOK {
					accepted++
				}
			}
			if tc.authorizedFirst {
				h.g.Expect(accepted).To(Equal(1), "only the good authorization was accepted")
			} else {
				h.g.Expect(accepted).To(BeZero())
				h.g.Expect(h.refreshTokenSecret()).To(BeNil(), "no refresh-token Secret was written")
			}
			if tc.event != "" {
				h.g.Eventually(h.eventReasons, soon, interval).Should(ContainElement(tc.event))
			}
			for _, secret := range []string{clientSecret, password} {
				h.g.Expect(got.body).NotTo(ContainSubstring(secret))
				h.g.Expect(h.logs.String()).NotTo(ContainSubstring(secret))
			}
		})
	}
}

func TestAuthorizationCodeWithoutTheAuthorizationServerSaysHowToEnableIt(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	g := h.g
	h.credentials("creds", h.clientCredentials())
	h.connection("catalog", "creds", snowv1.GrantAuthorizationCode)
	g.Eventually(h.readyStatus("catalog"), soon, interval).Should(Equal("False/AuthorizationServerDisabled"))
	g.Expect(h.condition("catalog", snowv1.ConditionReady).Message).To(ContainSubstring("--authorization-external-url"))
	g.Expect(h.get("catalog").Status.AuthorizationURL).To(BeEmpty())
}

func TestStartLinkOnlyEverRedirectsToTheConnectionsOwnInstance(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withAuthorization())
	g := h.g
	link := h.authCodeConnection()
	start := h.open(link)
	g.Expect(start.status).To(Equal(http.StatusFound))
	target, err := url.Parse(start.header.Get("Location"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(target.Scheme + "://" + target.Host).To(Equal(h.instanceURL()))
	g.Expect(target.Path).To(Equal("/oauth_auth.do"))
	q := target.Query()
	g.Expect(q.Get("response_type")).To(Equal("code"))
	g.Expect(q.Get("client_id")).To(Equal(clientID))
	g.Expect(q.Get("redirect_uri")).To(Equal(h.links.RedirectURI()), "the configured redirect URI, never one from the request")
	g.Expect(q.Get("code_challenge_method")).To(Equal("S256"))
	g.Expect(q.Get("code_challenge")).To(HaveLen(43))
	g.Expect(q.Get("state")).NotTo(BeEmpty())
	g.Expect(start.header.Get("Referrer-Policy")).To(Equal("no-referrer"))

	// Extra parameters cannot steer the redirect elsewhere.
	steered := h.open(link + "&redirect_uri=" + url.QueryEscape("https://evil.example.com/cb"))
	loc, _ := url.Parse(steered.header.Get("Location"))
	g.Expect(loc.Query().Get("redirect_uri")).To(Equal(h.links.RedirectURI()))
	g.Expect(strings.HasPrefix(steered.header.Get("Location"), h.instanceURL())).To(BeTrue())
}
