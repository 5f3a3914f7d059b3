package controllers_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/controllers"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
	"github.com/snowauth/snowauth/internal/testenv"
)

// withAuthorization runs the AuthorizationCode grant as production does:
// the manager mints links and exchanges codes; the authorization server
// (here in the test process, over TLS on loopback) walks a browser through
// ServiceNow's login and hands the code over in a namespace of its own.
func withAuthorization() harnessOption {
	return func(h *harness) {
		handler := http.NotFoundHandler()
		h.auth = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
		h.t.Cleanup(h.auth.Close)
		signer, err := authserver.NewSigner(authserver.NewKey())
		h.g.Expect(err).NotTo(HaveOccurred())
		external, err := authserver.ParseExternalURL(h.auth.URL + "/snowauth")
		h.g.Expect(err).NotTo(HaveOccurred())
		h.signer = signer
		h.links = &authserver.Links{Keys: authserver.StaticKeys{S: signer}, ExternalURL: external}
		h.handovers = env.Namespace(h.t)
		h.authz = &controllers.Authorization{Links: h.links, Namespace: h.handovers, SweepEvery: 200 * time.Millisecond}
		h.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser, RedirectURL: h.links.RedirectURI()})
		h.authSrv = &authserver.Server{
			Reader: env.Client, Writer: env.Client, Namespace: h.handovers, Links: h.links,
			Instances: testenv.ClientFor(h.t, h.sim, time.Second), Wait: 20 * time.Second, Poll: 50 * time.Millisecond,
		}
		handler = h.authSrv.Handler()
		h.jar, _ = cookiejar.New(nil)
	}
}

// browser is a person's browser, with its cookies, trusting the simulator
// and the authorization server, not following redirects so the test sees
// each step.
func (h *harness) browser() *http.Client {
	pool := h.sim.CertPool()
	pool.AddCert(h.auth.Certificate())
	return &http.Client{
		Jar:           h.jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// otherBrowser is another person's browser: no cookies of the first.
func (h *harness) otherBrowser() *http.Client {
	b := h.browser()
	b.Jar, _ = cookiejar.New(nil)
	return b
}

// page is an answer of the authorization server as a browser shows it.
type page struct {
	status int
	header http.Header
	body   string
}

func (h *harness) openWith(b *http.Client, method, u string, form url.Values) page {
	h.t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = b.PostForm(u, form)
	} else {
		resp, err = b.Get(u)
	}
	h.g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(body)}
}

func (h *harness) open(u string) page { return h.openWith(h.browser(), http.MethodGet, u, nil) }

// proceed opens a start link, checks the page that asks the person to go
// on, goes on, and returns where the browser is sent.
func (h *harness) proceed(link string) string {
	h.t.Helper()
	confirm := h.open(link)
	h.g.Expect(confirm.status).To(Equal(http.StatusOK), "the link opens a page that asks to go on: %s", confirm.body)
	u, _ := url.Parse(link)
	goOn := h.openWith(h.browser(), http.MethodPost, h.links.ExternalURL.String()+"/authorize", url.Values{"state": {u.Query().Get("state")}})
	h.g.Expect(goOn.status).To(Equal(http.StatusSeeOther), "going on redirects to ServiceNow: %s", goOn.body)
	return goOn.header.Get("Location")
}

// login follows a start link through the page and ServiceNow's login page,
// logs in there as the person (allow or deny), and returns the callback URL
// ServiceNow redirects the browser to.
func (h *harness) login(link string, allow bool) string {
	h.t.Helper()
	loc := h.proceed(link)
	h.g.Expect(loc).To(HavePrefix(h.instanceURL() + "/oauth_auth.do?"))
	cb, err := h.sim.Login(h.ctx, h.browser(), loc, username, password, allow)
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(cb.String()).To(HavePrefix(h.links.RedirectURI()))
	return cb.String()
}

// lastHandledAuthorizationRequest is the authorization-requested-at value
// snowauth last acted on, for Eventually.
func (h *harness) lastHandledAuthorizationRequest(name string) func() string {
	return func() string {
		if a := h.get(name).Status.Authorization; a != nil {
			return a.LastHandledRequest
		}
		return ""
	}
}

// requestLink asks for a new link as `kubectl servicenow authorize` does
// and returns it from the Secret status names, once the manager made it.
func (h *harness) requestLink(name string) string {
	h.t.Helper()
	value := time.Now().UTC().Format(time.RFC3339Nano)
	h.annotate(name, snowv1.AnnotationAuthorizationRequestedAt, value)
	h.g.Eventually(h.lastHandledAuthorizationRequest(name), soon, interval).Should(Equal(value))
	a := h.get(name).Status.Authorization
	h.g.Expect(a.LinkID).NotTo(BeEmpty(), "a link was made: %+v", a)
	secret := h.tokenSecret(a.LinkSecretName)
	h.g.Expect(secret).NotTo(BeNil())
	link := string(secret.Data[snowv1.AuthorizationKeyURL])
	h.g.Expect(link).To(HavePrefix(h.links.ExternalURL.String() + "/authorize?state="))
	return link
}

// authCodeConnection creates credentials and an AuthorizationCode
// connection named catalog, waits until it asks for a person, and returns
// a first link.
func (h *harness) authCodeConnection(mutate ...func(*snowv1.ServiceNowConnection)) string {
	h.credentials("creds", h.clientCredentials())
	h.connection("catalog", "creds", snowv1.GrantAuthorizationCode, mutate...)
	h.g.Eventually(h.readyStatus("catalog"), soon, interval).Should(Equal("False/AuthorizationRequired"))
	return h.requestLink("catalog")
}

func (h *harness) refreshTokenSecret() *corev1.Secret { return h.tokenSecret("catalog-refresh-token") }

func (h *harness) handoverGone(link string) func() bool {
	u, _ := url.Parse(link)
	st, _ := h.signer.Verify(u.Query().Get("state"), time.Now())
	return func() bool {
		err := env.Client.Get(h.ctx, client.ObjectKey{Namespace: h.handovers, Name: authserver.HandoverSecretName(authserver.LinkID(st.Nonce))}, &corev1.Secret{})
		return apierrors.IsNotFound(err)
	}
}

func TestAuthorizationCodeFlowFromRequestedLinkToTokenAndBack(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withAuthorization())
	g := h.g
	link := h.authCodeConnection(func(c *snowv1.ServiceNowConnection) {
		c.Spec.AuthorizationCode = &snowv1.AuthorizationCodeSpec{
			RefreshTokenLifespan: &metav1.Duration{Duration: 2 * time.Hour},
			ReauthorizeBefore:    &metav1.Duration{Duration: time.Hour},
		}
	})
	g.Expect(h.conditionReason("catalog", snowv1.ConditionStalled)()).To(Equal("AuthorizationRequired"))
	g.Expect(h.condition("catalog", snowv1.ConditionReady).Message).To(ContainSubstring("kubectl servicenow authorize catalog"))
	// Nobody who may only read the connection can use the link: status
	// names it, holds none.
	status, _ := json.Marshal(h.get("catalog").Status)
	state, _ := url.Parse(link)
	g.Expect(string(status)).NotTo(ContainSubstring(state.Query().Get("state")))
	g.Expect(h.get("catalog").Status.AuthorizationURL).To(BeEmpty())
	g.Expect(h.get("catalog").Status.Authorization.Server).To(Equal(h.links.ExternalURL.String()), "where the link may point")
	g.Eventually(h.eventReasons, soon, interval).Should(ContainElement("AuthorizationLinkCreated"))

	// The page the link opens names what is authorised and where.
	confirm := h.open(link)
	g.Expect(confirm.status).To(Equal(http.StatusOK))
	instance, _ := url.Parse(h.instanceURL())
	g.Expect(confirm.body).To(ContainSubstring("<b>catalog</b> in namespace <b>" + h.ns + "</b>"))
	g.Expect(confirm.body).To(ContainSubstring("Continue to " + instance.Host))
	g.Expect(confirm.header.Get("Content-Security-Policy")).To(ContainSubstring("frame-ancestors 'none'"))

	// A person goes on, logs in to ServiceNow and comes back.
	callback := h.login(link, true)
	done := h.open(callback)
	g.Expect(done.status).To(Equal(http.StatusOK), done.body)
	g.Expect(done.body).To(ContainSubstring("Connection " + h.ns + "/catalog is authorised by ServiceNow user " + username))
	g.Expect(done.header.Get("Cache-Control")).To(Equal("no-store"))
	g.Expect(done.header.Get("Referrer-Policy")).To(Equal("no-referrer"))
	cbURL, _ := url.Parse(callback)
	g.Expect(done.body).NotTo(ContainSubstring(cbURL.Query().Get("code")), "the page shows no code")
	g.Expect(done.body).NotTo(ContainSubstring(cbURL.Query().Get("state")), "the page shows no state")
	g.Eventually(h.handoverGone(link), soon, interval).Should(BeTrue(), "the manager consumed the hand-over")

	// The manager stored the exchange's token at once: one token request.
	g.Eventually(h.readyStatus("catalog"), soon, interval).Should(Equal("True/TokenValid"))
	g.Expect(h.tokenRequests(simulator.GrantAuthorizationCode)()).To(Equal(1))
	g.Consistently(h.tokenRequests(simulator.GrantRefreshToken), time.Second, interval).Should(BeZero())
	stored := h.refreshTokenSecret()
	g.Expect(metav1.IsControlledBy(stored, h.get("catalog"))).To(BeTrue())
	g.Expect(stored.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "snowauth"))
	g.Expect(stored.Data).NotTo(HaveKey(snowv1.AuthorizationKeyURL), "the used link is gone")
	refreshToken := string(stored.Data["refresh_token"])
	g.Expect(refreshToken).NotTo(BeEmpty())
	g.Expect(h.tokenSecret("catalog-token").Data).NotTo(HaveKey("refresh_token"), "applications never see the refresh token")
	st := h.get("catalog").Status
	g.Expect(st.Authorization.AuthorizedBy).To(Equal(username), "who authorised, as the instance says")
	g.Expect(st.Authorization.LinkID).To(BeEmpty())
	g.Expect(st.RefreshTokenExpiresAt.Time).To(BeTemporally("~", time.Now().Add(2*time.Hour), time.Minute))
	g.Expect(st.Horizons).To(ContainElement(And(HaveField("Kind", snowv1.HorizonRefreshToken), HaveField("At", *st.RefreshTokenExpiresAt))),
		"the refresh token's end is a horizon too")
	g.Expect(h.condition("catalog", snowv1.ConditionRefreshTokenExpiring)).To(BeNil())
	g.Eventually(h.eventReasons, soon, interval).Should(ContainElements("Authorized", "TokenIssued"))
	g.Expect(h.open(link).body).To(ContainSubstring("was used already"), "a link works once")

	// Inside the warning window a person is asked to authorise again, while
	// the token keeps working.
	c := h.get("catalog")
	patch := client.MergeFrom(c.DeepCopy())
	c.Spec.AuthorizationCode.ReauthorizeBefore = &metav1.Duration{Duration: 3 * time.Hour}
	g.Expect(env.Client.Patch(h.ctx, c, patch)).To(Succeed())
	g.Eventually(h.conditionReason("catalog", snowv1.ConditionRefreshTokenExpiring), soon, interval).Should(Equal("RefreshTokenExpiresSoon"))
	g.Expect(h.condition("catalog", snowv1.ConditionRefreshTokenExpiring).Message).To(ContainSubstring("kubectl servicenow authorize catalog"))
	g.Expect(h.readyStatus("catalog")()).To(Equal("True/TokenValid"))

	// ServiceNow rejects the refresh token (expired or revoked):
	// RefreshTokenRejected, the access token left in place.
	before := h.tokenSecret("catalog-token").Data
	h.sim.RevokeToken(refreshToken)
	h.requestRefresh("catalog", "after-revocation")
	g.Eventually(h.conditionReason("catalog", snowv1.ConditionRefreshFailed), soon, interval).Should(Equal("RefreshTokenRejected"))
	g.Expect(h.conditionReason("catalog", snowv1.ConditionStalled)()).To(Equal("RefreshTokenRejected"))
	g.Expect(h.condition("catalog", snowv1.ConditionRefreshFailed).Message).To(ContainSubstring("rejected the stored refresh token"))
	g.Expect(h.tokenSecret("catalog-token").Data).To(Equal(before))

	// An unrelated change to the connection does not send the rejected
	// refresh token again: only a new authorization (or the slow retry) does.
	rejected := h.tokenRequests(simulator.GrantRefreshToken)()
	h.annotate("catalog", "example.com/owner", "team-a")
	g.Consistently(h.tokenRequests(simulator.GrantRefreshToken), 3*time.Second, interval).Should(Equal(rejected))

	// Authorising again replaces the refresh token; the connection recovers.
	again := h.open(h.login(h.requestLink("catalog"), true))
	g.Expect(again.status).To(Equal(http.StatusOK), again.body)
	g.Eventually(h.conditionReason("catalog", snowv1.ConditionRefreshFailed), soon, interval).Should(BeEmpty())
	g.Expect(string(h.refreshTokenSecret().Data["refresh_token"])).NotTo(Equal(refreshToken))
	g.Expect(h.readyStatus("catalog")()).To(Equal("True/TokenValid"))
}

// Each bad input at a link or the callback gets a plain page that says
// what happened, and no refresh token is stored.
func TestAuthorizationRefusesWhatIsNotThePersonsNewestLinkAndStoresNothing(t *testing.T) {
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
			act: func(h *harness, _ string) page {
				return h.open(h.links.ExternalURL.String() + "/authorize?state=" + url.QueryEscape("eyJucyI6ImEifQ.Zm9yZ2Vk"))
			},
			status: http.StatusBadRequest, says: "was not issued by this snowauth",
		},
		{
			name: "refuses an expired link",
			act: func(h *harness, _ string) page {
				c := h.get("catalog")
				old := authserver.State{Namespace: c.Namespace, Name: c.Name, UID: string(c.UID), Nonce: "n", Expires: time.Now().Add(-time.Minute).Unix()}
				return h.open(h.links.ExternalURL.String() + "/authorize?state=" + url.QueryEscape(h.signer.Sign(old)))
			},
			status: http.StatusBadRequest, says: "has expired",
		},
		{
			name: "refuses a link once a newer one was made",
			act: func(h *harness, link string) page {
				h.requestLink("catalog")
				return h.open(link)
			},
			status: http.StatusConflict, says: "a newer link was made",
		},
		{
			name: "refuses a callback once a newer link was made",
			act: func(h *harness, link string) page {
				callback := h.login(link, true)
				h.requestLink("catalog")
				return h.open(callback)
			},
			status: http.StatusConflict, says: "a newer link was made",
		},
		{
			name: "refuses a callback in a browser that did not start the flow (login CSRF)",
			act: func(h *harness, link string) page {
				return h.openWith(h.otherBrowser(), http.MethodGet, h.login(link, true), nil)
			},
			status: http.StatusForbidden, says: "This browser did not start the authorization",
		},
		{
			name: "refuses the link of a connection that was deleted and created again",
			act: func(h *harness, link string) page {
				callback := h.login(link, true)
				h.g.Expect(env.Client.Delete(h.ctx, h.get("catalog"))).To(Succeed())
				h.connection("catalog", "creds", snowv1.GrantAuthorizationCode)
				return h.open(callback)
			},
			status: http.StatusGone, says: "no longer exists",
		},
		{
			name: "reports a person who declined at ServiceNow",
			act: func(h *harness, link string) page {
				return h.open(h.login(link, false))
			},
			status: http.StatusBadGateway, says: `ServiceNow reported &#34;access_denied&#34;`, event: "AuthorizationDenied",
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
			name: "refuses a callback after the credentials changed mid-flow",
			act: func(h *harness, link string) page {
				callback := h.login(link, true)
				d := h.clientCredentials()
				d["client_secret"] = "CANARY-rotated"
				h.credentials("creds", d)
				return h.open(callback)
			},
			status: http.StatusBadGateway, says: "the credentials Secret changed after link",
		},
		{
			name: "refuses a code whose PKCE verifier does not match (a code from another flow)",
			act: func(h *harness, link string) page {
				first, _ := url.Parse(h.login(link, true))
				// A second link and login; its code with the first link's
				// state is refused by ServiceNow (PKCE), once the first
				// link is the newest again... which it never is: so the
				// second link's state carries the first flow's code.
				second, _ := url.Parse(h.login(h.requestLink("catalog"), true))
				q := second.Query()
				q.Set("code", first.Query().Get("code"))
				second.RawQuery = q.Encode()
				return h.open(second.String())
			},
			status: http.StatusBadGateway, says: "did not accept the authorization code",
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
				if s := h.refreshTokenSecret(); s != nil {
					h.g.Expect(s.Data).NotTo(HaveKey(snowv1.AuthorizationKeyRefreshToken), "no refresh token was stored")
				}
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
	h.annotate("catalog", snowv1.AnnotationAuthorizationRequestedAt, "now")
	g.Eventually(h.lastHandledAuthorizationRequest("catalog"), soon, interval).Should(Equal("now"))
	g.Expect(h.get("catalog").Status.Authorization.LinkID).To(BeEmpty(), "no link without the server")
	g.Expect(h.refreshTokenSecret()).To(BeNil())
}

func TestGoingOnFromALinkOnlyEverRedirectsToTheConnectionsOwnInstance(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withAuthorization())
	g := h.g
	link := h.authCodeConnection()
	target, err := url.Parse(h.proceed(link))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(target.Scheme + "://" + target.Host).To(Equal(h.instanceURL()))
	g.Expect(target.Path).To(Equal("/oauth_auth.do"))
	q := target.Query()
	g.Expect(q.Get("response_type")).To(Equal("code"))
	g.Expect(q.Get("client_id")).To(Equal(clientID))
	g.Expect(q.Get("redirect_uri")).To(Equal(h.links.RedirectURI()), "the configured redirect URI, never one from the request")
	g.Expect(q.Get("code_challenge_method")).To(Equal("S256"))
	g.Expect(q.Get("code_challenge")).To(HaveLen(43))

	// The browser is bound to the flow by a __Host- cookie.
	auth, _ := url.Parse(h.auth.URL)
	var names []string
	for _, c := range h.jar.Cookies(auth) {
		names = append(names, c.Name)
	}
	g.Expect(names).To(ContainElement(HavePrefix("__Host-snowauth-")))

	// Extra parameters cannot steer the redirect elsewhere.
	u, _ := url.Parse(link)
	steered := h.openWith(h.browser(), http.MethodPost, h.links.ExternalURL.String()+"/authorize?redirect_uri="+url.QueryEscape("https://evil.example.com/cb"),
		url.Values{"state": {u.Query().Get("state")}})
	loc, _ := url.Parse(steered.header.Get("Location"))
	g.Expect(loc.Query().Get("redirect_uri")).To(Equal(h.links.RedirectURI()))
	g.Expect(strings.HasPrefix(steered.header.Get("Location"), h.instanceURL())).To(BeTrue())
}

// A Secret of someone else's in the place of the connection's
// refresh-token Secret is left alone: the connection says so, and asking
// for a link makes none.
func TestALinkIsNotWrittenOverSomeoneElsesSecret(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withAuthorization())
	g := h.g
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "catalog-refresh-token"}, StringData: map[string]string{"mine": "yes"}}
	g.Expect(env.Client.Create(h.ctx, theirs)).To(Succeed())
	h.credentials("creds", h.clientCredentials())
	h.connection("catalog", "creds", snowv1.GrantAuthorizationCode)
	g.Eventually(h.readyStatus("catalog"), soon, interval).Should(Equal("False/SecretConflict"))
	g.Expect(h.condition("catalog", snowv1.ConditionReady).Message).To(ContainSubstring("Secret catalog-refresh-token exists and is not this connection's"))
	h.annotate("catalog", snowv1.AnnotationAuthorizationRequestedAt, "now")
	g.Eventually(h.lastHandledAuthorizationRequest("catalog"), soon, interval).Should(Equal("now"))
	g.Expect(h.conditionReason("catalog", snowv1.ConditionRefreshFailed)()).To(Equal("SecretConflict"))
	g.Expect(h.tokenSecret("catalog-refresh-token").Data).To(Equal(map[string][]byte{"mine": []byte("yes")}))
	g.Expect(h.get("catalog").Status.Authorization.LinkID).To(BeEmpty())
}

// A hand-over no current link will take (a replaced or expired link's, a
// deleted connection's) does not stay forever: the manager deletes it.
func TestHandOversNoCurrentLinkTakesAreSweptAway(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withAuthorization())
	g := h.g
	link := h.authCodeConnection()
	// Replaced before its person came back: the server's hand-over of the
	// old link, written as the person's callback would.
	h.requestLink("catalog")
	u, _ := url.Parse(link)
	st, err := h.signer.Verify(u.Query().Get("state"), time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	stale := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.handovers, Name: authserver.HandoverSecretName(authserver.LinkID(st.Nonce)),
			Labels: map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue, authserver.LabelHandover: "true"}},
		Data: map[string][]byte{authserver.HandoverState: []byte(u.Query().Get("state")), authserver.HandoverCode: []byte("late-code")},
	}
	g.Expect(env.Client.Create(h.ctx, stale)).To(Succeed())
	g.Eventually(h.handoverGone(link), soon, interval).Should(BeTrue())
	g.Expect(h.tokenRequests(simulator.GrantAuthorizationCode)()).To(BeZero(), "its code was never exchanged")
	// The current link still works.
	g.Expect(h.open(h.login(h.requestLink("catalog"), true)).status).To(Equal(http.StatusOK))
	g.Eventually(h.readyStatus("catalog"), soon, interval).Should(Equal("True/TokenValid"))
}
