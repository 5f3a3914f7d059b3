package servicenow_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

const authState = "signed-state-7c1e"

// browser is an HTTP client for the simulator's login page, as the person's
// browser would be, except that it stops at redirects.
func browser(sim *simulator.Simulator) *http.Client {
	return &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()}},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// authorize registers redirectURI for the fixture's OAuth client, logs the
// user in through oauth_auth.do with the S256 challenge of verifier, and
// returns the code the simulator sent to the redirect URI.
func authorize(t *testing.T, f *fixture, verifier string) string {
	t.Helper()
	f.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: canaryClientSecret, ApplicationUser: username,
		RedirectURL: redirectURI})
	authURL := servicenow.AuthCodeURL(f.base, clientID, redirectURI, authState, servicenow.S256Challenge(verifier))
	callback, err := f.sim.Login(context.Background(), browser(f.sim), authURL, username, canaryPassword, true)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if got := callback.Query().Get("state"); got != authState {
		t.Fatalf("the callback carries state %q, want %q", got, authState)
	}
	code := callback.Query().Get("code")
	if code == "" {
		t.Fatalf("the callback carries no code: %s", callback.Redacted())
	}
	return code
}

func (f *fixture) codeRequest(code, verifier string) servicenow.TokenRequest {
	req := f.request(servicenow.GrantAuthorizationCode)
	req.Credentials.Code = code
	req.Credentials.CodeVerifier = verifier
	return req
}

func TestAuthorizationCodeGrant(t *testing.T) {
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fixedClock := func(o *servicenow.Options) { o.Now = func() time.Time { return issued } }

	t.Run("exchanges a code for an access token and a refresh token", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{}, fixedClock)
		code := authorize(t, f, canaryVerifier)

		tok, err := f.client.Token(context.Background(), f.codeRequest(code, canaryVerifier))

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(tok.AccessToken).NotTo(BeEmpty())
		g.Expect(tok.RefreshToken).NotTo(BeEmpty())
		g.Expect(tok.TokenType).To(Equal("Bearer"))
		g.Expect(tok.ExpiresIn).To(Equal(1799 * time.Second))
		g.Expect(tok.Expiry).To(Equal(issued.Add(1799 * time.Second)))
		g.Expect(f.sim.TokenRequests(clientID, "authorization_code")).To(Equal(1))
		refreshed, err := f.client.Token(context.Background(), servicenow.TokenRequest{
			Instance: f.base, Grant: servicenow.GrantRefreshToken,
			Credentials: servicenow.Credentials{ClientID: clientID, ClientSecret: canaryClientSecret,
				RefreshToken: tok.RefreshToken},
		})
		g.Expect(err).NotTo(HaveOccurred(), "the refresh token works")
		g.Expect(refreshed.RefreshToken).To(Equal(tok.RefreshToken))
	})

	for _, tc := range []struct {
		name     string
		exchange func(t *testing.T, f *fixture, code string) servicenow.TokenRequest
	}{
		{
			name: "keeps reason AuthenticationFailed when the PKCE verifier does not match the challenge",
			exchange: func(_ *testing.T, f *fixture, code string) servicenow.TokenRequest {
				return f.codeRequest(code, "canary-other-verifier-abcdefghijklmnopqrstuvwxyz-0123")
			},
		},
		{
			name: "keeps reason AuthenticationFailed when the code was already used",
			exchange: func(t *testing.T, f *fixture, code string) servicenow.TokenRequest {
				if _, err := f.client.Token(context.Background(), f.codeRequest(code, canaryVerifier)); err != nil {
					t.Fatalf("first exchange: %v", err)
				}
				return f.codeRequest(code, canaryVerifier)
			},
		},
		{
			name: "keeps reason AuthenticationFailed when the code is older than 60 seconds",
			exchange: func(_ *testing.T, f *fixture, code string) servicenow.TokenRequest {
				f.sim.Advance(61 * time.Second)
				return f.codeRequest(code, canaryVerifier)
			},
		},
		{
			name: "keeps reason AuthenticationFailed when the redirect URI differs from the authorisation's",
			exchange: func(_ *testing.T, f *fixture, code string) servicenow.TokenRequest {
				req := f.codeRequest(code, canaryVerifier)
				req.Credentials.RedirectURI = redirectURI + "/other"
				return req
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newFixture(t, simulator.Options{})
			code := authorize(t, f, canaryVerifier)
			req := tc.exchange(t, f, code)

			tok, err := f.client.Token(context.Background(), req)

			g.Expect(tok).To(BeNil())
			var e *servicenow.Error
			g.Expect(errors.As(err, &e)).To(BeTrue(), "want *servicenow.Error, got %T: %v", err, err)
			g.Expect(e.Kind).To(Equal(servicenow.KindAuthenticationFailed), "error: %v", err)
			g.Expect(e.Kind.Retryable()).To(BeFalse())
			g.Expect(e.StatusCode).To(Equal(401))
			g.Expect(err.Error()).To(ContainSubstring("authorise again"))
			expectNoSecrets(g, err, append(slicesClone(canaries), code, req.Credentials.CodeVerifier))
		})
	}
}

func TestAuthCodeURL(t *testing.T) {
	t.Run("names every parameter of the login step and query-encodes them", func(t *testing.T) {
		g := NewWithT(t)
		instance := resolve(t, "dev98042")
		redirect := "https://snowauth.example.com/callback?connection=a b&x=1"
		state := "payload+/=.mac&evil=1"

		raw := servicenow.AuthCodeURL(instance, "client id&x", redirect, state, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")

		u, err := url.Parse(raw)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(u.Scheme + "://" + u.Host + u.Path).To(Equal("https://dev98042.service-now.com/oauth_auth.do"))
		g.Expect(u.Query()).To(Equal(url.Values{
			"response_type":         {"code"},
			"client_id":             {"client id&x"},
			"redirect_uri":          {redirect},
			"state":                 {state},
			"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
			"code_challenge_method": {"S256"},
		}))
		g.Expect(u.RawQuery).NotTo(ContainSubstring("evil=1&"), "values are encoded, not spliced")
		g.Expect(u.RawQuery).To(ContainSubstring("state=payload%2B%2F%3D.mac%26evil%3D1"))
	})

	t.Run("keeps the port of the instance URL", func(t *testing.T) {
		g := NewWithT(t)
		instance := resolve(t, "https://snow.example.com:8443/")

		u, err := url.Parse(servicenow.AuthCodeURL(instance, "id", redirectURI, "s", "c"))

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(u.Host).To(Equal("snow.example.com:8443"))
		g.Expect(u.Path).To(Equal("/oauth_auth.do"))
		g.Expect(u.Query()).NotTo(HaveKey("x"))
	})

	t.Run("returns an empty string without an instance", func(t *testing.T) {
		NewWithT(t).Expect(servicenow.AuthCodeURL(servicenow.Instance{}, "id", redirectURI, "s", "c")).To(BeEmpty())
	})
}

// resolve resolves instance with a client that allows snow.example.com too.
func resolve(t *testing.T, instance string) servicenow.Instance {
	t.Helper()
	c, err := servicenow.NewClient(servicenow.Options{AllowedDomains: append([]string{"snow.example.com"}, servicenow.DefaultAllowedDomains...)})
	if err != nil {
		t.Fatal(err)
	}
	i, err := c.ResolveInstance(instance)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestS256ChallengeMatchesRFC7636AppendixB(t *testing.T) {
	g := NewWithT(t)

	g.Expect(servicenow.S256Challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")).
		To(Equal("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"))
}
