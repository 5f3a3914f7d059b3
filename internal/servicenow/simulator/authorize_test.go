package simulator_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

const (
	callbackURL = "https://snowauth.example.com/callback"
	state       = "state-0f3c"
	verifier    = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// withRedirect registers callbackURL as the OAuth client's Redirect URL.
func withRedirect(t *testing.T) *instance {
	t.Helper()
	in := newInstance(t, simulator.Options{})
	in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, RedirectURL: callbackURL})
	return in
}

// authParams is a valid oauth_auth.do request with PKCE.
func authParams() url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {callbackURL},
		"state": {state}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}}
}

func without(v url.Values, key string) url.Values {
	c := url.Values{}
	for k, vs := range v {
		if k != key {
			c[k] = vs
		}
	}
	return c
}

func withParam(v url.Values, key, value string) url.Values {
	c := without(v, key)
	c.Set(key, value)
	return c
}

func (in *instance) authURL(params url.Values) string {
	return in.URL() + "/oauth_auth.do?" + params.Encode()
}

// postLogin submits the login form directly.
func (in *instance) postLogin(t *testing.T, params url.Values, user, pass, action string) answer {
	t.Helper()
	form := url.Values{"user_name": {user}, "user_password": {pass}, "action": {action}}
	for k, vs := range params {
		form[k] = vs
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, in.URL()+"/oauth_auth.do",
		strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return in.do(t, req)
}

// login returns the code the simulator sends to the callback.
func (in *instance) login(t *testing.T, params url.Values) string {
	t.Helper()
	callback, err := in.Login(t.Context(), in.http, in.authURL(params), username, password, true)
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	return callback.Query().Get("code")
}

func codeGrant(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID}, "client_secret": {secret},
		"code": {code}, "redirect_uri": {callbackURL}, "code_verifier": {verifier}}
}

func TestLoginPage(t *testing.T) {
	t.Run("shows a login form that carries the request", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)
		params := authParams()
		params.Set("state", `a"b<c>&d`)

		a := in.get(t, "/oauth_auth.do?"+params.Encode(), "")

		g.Expect(a.status).To(Equal(200))
		g.Expect(a.header.Get("Content-Type")).To(HavePrefix("text/html"))
		g.Expect(a.header.Get("Cache-Control")).To(Equal("no-store"))
		g.Expect(a.body).To(ContainSubstring(`<form method="post" action="/oauth_auth.do">`))
		g.Expect(a.body).To(ContainSubstring(`name="user_name"`))
		g.Expect(a.body).To(ContainSubstring(`name="user_password"`))
		g.Expect(a.body).To(ContainSubstring(`<input type="hidden" name="code_challenge" value="` + challenge(verifier) + `">`))
		g.Expect(a.body).NotTo(ContainSubstring(`a"b<c>`), "the state is escaped")
	})

	for _, tc := range []struct {
		name   string
		params url.Values
		want   string
	}{
		{"answers 400 Missing State parameter in request without a state", without(authParams(), "state"),
			"Missing State parameter in request"},
		{"answers 400 for an unknown client", withParam(authParams(), "client_id", "nobody"), "Invalid client_id"},
		{"answers 400 for a response_type other than code", withParam(authParams(), "response_type", "token"),
			"Invalid response_type"},
		{"answers 400 for a plain PKCE challenge", withParam(authParams(), "code_challenge_method", "plain"), "only S256"},
		{"answers 400 for a PKCE method without a challenge", without(authParams(), "code_challenge"), "only S256"},
		{"answers 400 for a redirect URI other than the registered one",
			withParam(authParams(), "redirect_uri", "https://evil.example.net/callback"), "Invalid redirect_uri"},
		{"answers 400 for a redirect URI that only starts like the registered one",
			withParam(authParams(), "redirect_uri", callbackURL+"/../evil"), "Invalid redirect_uri"},
		{"answers 400 without a redirect URI", without(authParams(), "redirect_uri"), "Invalid redirect_uri"},
	} {
		t.Run(tc.name+", never redirecting", func(t *testing.T) {
			g := NewWithT(t)
			in := withRedirect(t)

			shown := in.get(t, "/oauth_auth.do?"+tc.params.Encode(), "")
			submitted := in.postLogin(t, tc.params, username, password, "allow")

			for _, a := range []answer{shown, submitted} {
				g.Expect(a.status).To(Equal(400))
				g.Expect(a.header.Get("Location")).To(BeEmpty())
				g.Expect(a.header.Get("Content-Type")).To(HavePrefix("text/plain"))
				g.Expect(a.body).To(ContainSubstring(tc.want))
			}
		})
	}

	t.Run("answers 400 to every request while the client has no Redirect URL", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		params := authParams()
		params.Set("redirect_uri", "")

		a := in.get(t, "/oauth_auth.do?"+params.Encode(), "")

		g.Expect(a.status).To(Equal(400))
		g.Expect(a.body).To(ContainSubstring("Invalid redirect_uri"))
	})

	t.Run("shows the login page again for a wrong password", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)

		a := in.postLogin(t, authParams(), username, "wrong-password-canary", "allow")

		g.Expect(a.status).To(Equal(200))
		g.Expect(a.header.Get("Location")).To(BeEmpty())
		g.Expect(a.body).To(ContainSubstring("User name or password invalid"))
		g.Expect(a.body).To(ContainSubstring(`name="user_password"`))
		g.Expect(a.body).NotTo(ContainSubstring("wrong-password-canary"))

		_, err := in.Login(t.Context(), in.http, in.authURL(authParams()), username, "wrong-password-canary", true)
		g.Expect(err).To(MatchError(ContainSubstring("wrong username or password")))
		g.Expect(err.Error()).NotTo(ContainSubstring("wrong-password-canary"))
	})

	t.Run("shows the login page again for an inactive user", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)
		in.AddUser(simulator.User{Username: username, Password: password, Inactive: true})

		g.Expect(in.postLogin(t, authParams(), username, password, "allow").status).To(Equal(200))
	})

	t.Run("redirects with error=access_denied and the state when the user denies", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)

		callback, err := in.Login(t.Context(), in.http, in.authURL(authParams()), username, password, false)

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(callback.Scheme + "://" + callback.Host + callback.Path).To(Equal(callbackURL))
		g.Expect(callback.Query()).To(Equal(url.Values{"error": {"access_denied"}, "state": {state}}))
	})

	t.Run("redirects with a code and the state when the user allows", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)

		a := in.postLogin(t, authParams(), username, password, "allow")

		g.Expect(a.status).To(Equal(302))
		callback, err := url.Parse(a.header.Get("Location"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(callback.Scheme + "://" + callback.Host + callback.Path).To(Equal(callbackURL))
		g.Expect(callback.Query().Get("state")).To(Equal(state))
		g.Expect(callback.Query().Get("code")).NotTo(BeEmpty())
	})

	t.Run("keeps the registered Redirect URL's own query parameters", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		registered := callbackURL + "?tenant=blue"
		in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, RedirectURL: registered})
		params := authParams()
		params.Set("redirect_uri", registered)

		callback, err := in.Login(t.Context(), in.http, in.authURL(params), username, password, true)

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(callback.Query().Get("tenant")).To(Equal("blue"))
		g.Expect(callback.Query().Get("code")).NotTo(BeEmpty())
	})
}

func TestAuthorizationCodeExchange(t *testing.T) {
	t.Run("logs in with Login and exchanges the code for an access token and a refresh token", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)
		code := in.login(t, authParams())

		a := in.token(t, codeGrant(code, verifier))

		g.Expect(a.status).To(Equal(200))
		g.Expect(a.header.Get("Cache-Control")).To(Equal("no-store"))
		g.Expect(a.json).To(HaveKeyWithValue("expires_in", BeEquivalentTo(1799)))
		g.Expect(a.json).To(HaveKeyWithValue("token_type", "Bearer"))
		g.Expect(a.str("access_token")).NotTo(BeEmpty())
		rt := a.str("refresh_token")
		g.Expect(rt).NotTo(BeEmpty())
		g.Expect(expiry(t, in, rt)).To(BeTemporally("~", in.Now().Add(simulator.DefaultRefreshTokenLifespan), time.Second))
		g.Expect(in.get(t, "/api/now/table/sys_user", a.str("access_token")).status).To(Equal(200))
		g.Expect(in.token(t, refreshGrant(rt)).status).To(Equal(200))
		g.Expect(in.TokenRequests(clientID, simulator.GrantAuthorizationCode)).To(Equal(1))
		g.Expect(in.TokenRequestLog()[0]).To(And(HaveField("Grant", "authorization_code"), HaveField("Status", 200)))
	})

	t.Run("issues a new refresh token with a full lifespan when the user authorises again", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)
		first := in.token(t, codeGrant(in.login(t, authParams()), verifier)).str("refresh_token")
		firstExpiry := expiry(t, in, first)
		in.Advance(30 * 24 * time.Hour)

		second := in.token(t, codeGrant(in.login(t, authParams()), verifier)).str("refresh_token")

		g.Expect(second).NotTo(BeEmpty())
		g.Expect(second).NotTo(Equal(first))
		g.Expect(expiry(t, in, second)).To(BeTemporally("~", firstExpiry.Add(30*24*time.Hour), time.Second))
		g.Expect(expiry(t, in, first)).To(Equal(firstExpiry), "the old refresh token is neither extended nor revoked")
	})

	t.Run("exchanges a code issued without PKCE without a verifier", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)
		code := in.login(t, without(without(authParams(), "code_challenge"), "code_challenge_method"))

		g.Expect(in.token(t, without(codeGrant(code, ""), "code_verifier")).status).To(Equal(200))
	})

	t.Run("follows a redirect to its own oauth_auth.do in Login, as from snowauth's authorisation link", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)
		start := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, in.authURL(authParams()), http.StatusFound)
		}))
		t.Cleanup(start.Close)

		callback, err := in.Login(t.Context(), in.http, start.URL+"/authorize?state=x", username, password, true)

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(callback.Query().Get("code")).NotTo(BeEmpty())
	})

	t.Run("refuses in Login to follow a redirect anywhere else", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)
		start := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://evil.example.net/oauth_auth.do", http.StatusFound)
		}))
		t.Cleanup(start.Close)

		_, err := in.Login(context.Background(), in.http, start.URL, username, password, true)

		g.Expect(err).To(MatchError(ContainSubstring("somewhere other than the simulator's oauth_auth.do")))
	})

	t.Run("reports the 400 page's text from Login", func(t *testing.T) {
		g := NewWithT(t)
		in := withRedirect(t)

		_, err := in.Login(t.Context(), in.http, in.authURL(without(authParams(), "state")), username, password, true)

		g.Expect(err).To(MatchError(ContainSubstring("HTTP 400")))
		g.Expect(err).To(MatchError(ContainSubstring("Missing State parameter in request")))
	})

	for _, tc := range []struct {
		name string
		form func(t *testing.T, in *instance, code string) url.Values
	}{
		{"a code used a second time", func(t *testing.T, in *instance, code string) url.Values {
			if a := in.token(t, codeGrant(code, verifier)); a.status != 200 {
				t.Fatalf("first exchange: HTTP %d", a.status)
			}
			return codeGrant(code, verifier)
		}},
		{"a code whose first exchange failed", func(t *testing.T, in *instance, code string) url.Values {
			if a := in.token(t, codeGrant(code, "wrong-"+verifier)); a.status != 401 {
				t.Fatalf("first exchange: HTTP %d", a.status)
			}
			return codeGrant(code, verifier)
		}},
		{"a code older than 60 seconds", func(_ *testing.T, in *instance, code string) url.Values {
			in.Advance(simulator.AuthorizationCodeLifespan + time.Second)
			return codeGrant(code, verifier)
		}},
		{"a wrong PKCE verifier", func(_ *testing.T, _ *instance, code string) url.Values {
			return codeGrant(code, "wrong-"+verifier)
		}},
		{"a missing PKCE verifier", func(_ *testing.T, _ *instance, code string) url.Values {
			return without(codeGrant(code, verifier), "code_verifier")
		}},
		{"another redirect URI", func(_ *testing.T, _ *instance, code string) url.Values {
			f := codeGrant(code, verifier)
			f.Set("redirect_uri", callbackURL+"/")
			return f
		}},
		{"a wrong client secret", func(_ *testing.T, _ *instance, code string) url.Values {
			f := codeGrant(code, verifier)
			f.Set("client_secret", "nope")
			return f
		}},
		{"another client", func(_ *testing.T, in *instance, code string) url.Values {
			in.AddClient(simulator.OAuthClient{ID: "other", Secret: secret, RedirectURL: callbackURL})
			f := codeGrant(code, verifier)
			f.Set("client_id", "other")
			return f
		}},
		{"a user deactivated since the login", func(_ *testing.T, in *instance, code string) url.Values {
			in.AddUser(simulator.User{Username: username, Password: password, Inactive: true})
			return codeGrant(code, verifier)
		}},
		{"an unknown code", func(_ *testing.T, _ *instance, _ string) url.Values {
			return codeGrant("made-up", verifier)
		}},
		{"a client that may not use the grant", func(_ *testing.T, in *instance, code string) url.Values {
			in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, RedirectURL: callbackURL,
				Grants: []string{simulator.GrantPassword}})
			return codeGrant(code, verifier)
		}},
	} {
		t.Run("answers 401 access_denied to "+tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := withRedirect(t)
			code := in.login(t, authParams())
			form := tc.form(t, in, code)

			a := in.token(t, form)

			g.Expect(a.status).To(Equal(401))
			g.Expect(a.body).To(Equal(deniedBody))
		})
	}
}
