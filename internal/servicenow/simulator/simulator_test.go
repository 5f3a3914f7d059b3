package simulator_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	. "github.com/onsi/gomega/gstruct"

	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

const (
	clientID = "snowauth"
	secret   = "client-secret"
	username = "svc"
	password = "user-password"
)

// instance is a simulator with one client and one user, and a raw HTTP
// client that trusts it: these tests look at the wire, not at snowauth's
// client.
type instance struct {
	*simulator.Simulator
	http *http.Client
}

func newInstance(t *testing.T, opts simulator.Options) *instance {
	t.Helper()
	s := simulator.New(opts)
	t.Cleanup(s.Close)
	s.AddUser(simulator.User{Username: username, Password: password})
	s.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, ApplicationUser: username})
	return &instance{Simulator: s, http: &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}},
		// Long enough for any answer; short enough that a simulator bug
		// fails the test instead of hanging it.
		Timeout: 10 * time.Second,
		// The tests look at redirects themselves.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type answer struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

func (a answer) str(field string) string { s, _ := a.json[field].(string); return s }

func (in *instance) do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := in.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(body)}
	_ = json.Unmarshal(body, &a.json)
	return a
}

func (in *instance) token(t *testing.T, form url.Values) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, in.URL()+"/oauth_token.do", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return in.do(t, req)
}

func (in *instance) get(t *testing.T, path, bearer string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, in.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return in.do(t, req)
}

func passwordGrant() url.Values {
	return url.Values{"grant_type": {"password"}, "client_id": {clientID}, "client_secret": {secret},
		"username": {username}, "password": {password}}
}

func refreshGrant(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "client_secret": {secret},
		"refresh_token": {rt}}
}

func expiry(t *testing.T, in *instance, tok string) time.Time {
	t.Helper()
	e, ok := in.TokenExpiry(tok)
	if !ok {
		t.Fatalf("the simulator does not know token %q", tok)
	}
	return e
}

const deniedBody = `{"error_description":"access_denied","error":"server_error"}`

func TestTokenReuseAndExpiry(t *testing.T) {
	t.Run("answers the password grant like ServiceNow", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})

		a := in.token(t, passwordGrant())

		g.Expect(a.status).To(Equal(200))
		g.Expect(a.header.Get("Content-Type")).To(Equal("application/json;charset=UTF-8"))
		g.Expect(a.json).To(HaveKeyWithValue("expires_in", BeEquivalentTo(1799)))
		g.Expect(a.json).To(HaveKeyWithValue("token_type", "Bearer"))
		g.Expect(a.json).To(HaveKeyWithValue("scope", "useraccount"))
		g.Expect(a.str("access_token")).NotTo(BeEmpty())
		g.Expect(a.str("refresh_token")).NotTo(BeEmpty())
	})

	t.Run("returns the same access token with its expiry extended while it is valid", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		first := in.token(t, passwordGrant())
		firstExpiry := expiry(t, in, first.str("access_token"))
		in.Advance(20 * time.Minute)

		second := in.token(t, passwordGrant())

		g.Expect(second.str("access_token")).To(Equal(first.str("access_token")))
		g.Expect(second.str("refresh_token")).To(Equal(first.str("refresh_token")))
		g.Expect(second.json).To(HaveKeyWithValue("expires_in", BeEquivalentTo(1799)))
		g.Expect(expiry(t, in, second.str("access_token"))).To(BeTemporally("~", firstExpiry.Add(20*time.Minute), time.Second))
	})

	t.Run("issues a new access token once the old one has expired", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		first := in.token(t, passwordGrant())
		in.Advance(31 * time.Minute)

		second := in.token(t, passwordGrant())

		g.Expect(second.status).To(Equal(200))
		g.Expect(second.str("access_token")).NotTo(Equal(first.str("access_token")))
	})

	t.Run("returns the same refresh token on refresh without extending it", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		rt := in.token(t, passwordGrant()).str("refresh_token")
		issued := expiry(t, in, rt)
		in.Advance(24 * time.Hour)

		a := in.token(t, refreshGrant(rt))

		g.Expect(a.status).To(Equal(200))
		g.Expect(a.str("refresh_token")).To(Equal(rt))
		g.Expect(a.str("access_token")).NotTo(BeEmpty())
		g.Expect(expiry(t, in, rt)).To(Equal(issued))
	})

	t.Run("kills a refresh token 100 days after issue even when it is used every day", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		rt := in.token(t, passwordGrant()).str("refresh_token")
		for day := 1; day < 100; day++ {
			in.Advance(24 * time.Hour)
			g.Expect(in.token(t, refreshGrant(rt)).status).To(Equal(200), "day %d", day)
		}

		in.Advance(24 * time.Hour)
		a := in.token(t, refreshGrant(rt))

		g.Expect(a.status).To(Equal(401))
		g.Expect(a.body).To(Equal(deniedBody))
	})

	t.Run("extends the refresh token on a password grant", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{RefreshTokenLifespan: 48 * time.Hour})
		rt := in.token(t, passwordGrant()).str("refresh_token")
		in.Advance(36 * time.Hour)

		again := in.token(t, passwordGrant())
		in.Advance(36 * time.Hour)

		g.Expect(again.str("refresh_token")).To(Equal(rt))
		g.Expect(in.token(t, refreshGrant(rt)).status).To(Equal(200))
	})

	t.Run("uses the client's own lifespans over the instance's", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, AccessTokenLifespan: time.Hour})

		g.Expect(in.token(t, passwordGrant()).json).To(HaveKeyWithValue("expires_in", BeEquivalentTo(3599)))
	})

	t.Run("gives client credentials an access token and no refresh token", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{ClientCredentialsEnabled: true})

		a := in.token(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}})

		g.Expect(a.status).To(Equal(200))
		g.Expect(a.json).NotTo(HaveKey("refresh_token"))
		g.Expect(in.get(t, "/api/now/table/sys_user", a.str("access_token")).status).To(Equal(200))
	})
}

func TestTokenRejections(t *testing.T) {
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
	with := func(v url.Values, key, value string) url.Values {
		c := url.Values{}
		for k, vs := range v {
			c[k] = vs
		}
		c.Set(key, value)
		return c
	}
	fixed := func(v url.Values) func(*testing.T, *instance) url.Values {
		return func(*testing.T, *instance) url.Values { return v }
	}
	for _, tc := range []struct {
		name  string
		opts  simulator.Options
		setup func(in *instance)
		form  func(t *testing.T, in *instance) url.Values
	}{
		{name: "a wrong client secret", form: fixed(with(passwordGrant(), "client_secret", "nope"))},
		{name: "an unknown client", form: fixed(with(passwordGrant(), "client_id", "nobody"))},
		{name: "a wrong password", form: fixed(with(passwordGrant(), "password", "nope"))},
		{name: "an unknown grant", form: fixed(with(passwordGrant(), "grant_type", "urn:example:magic"))},
		{name: "an inactive user", form: fixed(passwordGrant()),
			setup: func(in *instance) { in.AddUser(simulator.User{Username: username, Password: password, Inactive: true}) }},
		{name: "an inactive OAuth client", form: fixed(passwordGrant()),
			setup: func(in *instance) { in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, Inactive: true}) }},
		{name: "a grant the client may not use", form: fixed(passwordGrant()),
			setup: func(in *instance) {
				in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, Grants: []string{simulator.GrantClientCredentials}})
			}},
		{name: "an unknown refresh token", form: fixed(refreshGrant("made-up"))},
		{name: "an access token used as a refresh token", form: func(t *testing.T, in *instance) url.Values {
			return refreshGrant(in.token(t, passwordGrant()).str("access_token"))
		}},
		{name: "another client's refresh token", form: func(t *testing.T, in *instance) url.Values {
			in.AddClient(simulator.OAuthClient{ID: "other", Secret: "other-secret"})
			rt, err := in.IssueRefreshToken("other", username)
			if err != nil {
				t.Fatal(err)
			}
			return refreshGrant(rt)
		}},
		{name: "client credentials while the system property is off", form: fixed(cc)},
		{name: "client credentials without an application user", opts: simulator.Options{ClientCredentialsEnabled: true}, form: fixed(cc),
			setup: func(in *instance) { in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret}) }},
		{name: "client credentials with an inactive application user", opts: simulator.Options{ClientCredentialsEnabled: true}, form: fixed(cc),
			setup: func(in *instance) { in.AddUser(simulator.User{Username: username, Password: password, Inactive: true}) }},
	} {
		t.Run("answers 401 access_denied to "+tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := newInstance(t, tc.opts)
			form := tc.form(t, in)
			if tc.setup != nil {
				tc.setup(in)
			}

			a := in.token(t, form)

			g.Expect(a.status).To(Equal(401))
			g.Expect(a.body).To(Equal(deniedBody))
		})
	}

	t.Run("answers 401 access_denied to a JSON body", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		body, _ := json.Marshal(map[string]string{"grant_type": "password", "client_id": clientID,
			"client_secret": secret, "username": username, "password": password})
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, in.URL()+"/oauth_token.do", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")

		a := in.do(t, req)

		g.Expect(a.status).To(Equal(401))
		g.Expect(a.body).To(Equal(deniedBody))
		g.Expect(in.TokenRequests("", "")).To(Equal(1), "a JSON request still counts")
	})

	t.Run("answers 401 access_denied to credentials in the query string", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost,
			in.URL()+"/oauth_token.do?"+passwordGrant().Encode(), strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")

		g.Expect(in.do(t, req).status).To(Equal(401))
	})
}

func TestRevocation(t *testing.T) {
	t.Run("makes a revoked refresh token unusable", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		rt := in.token(t, passwordGrant()).str("refresh_token")

		revoke := in.get(t, "/oauth_revoke_token.do?token="+url.QueryEscape(rt), "")

		g.Expect(revoke.status).To(Equal(200))
		g.Expect(in.token(t, refreshGrant(rt)).status).To(Equal(401))
	})

	t.Run("makes a revoked access token fail on the Table API and issues a new one", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		at := in.token(t, passwordGrant()).str("access_token")
		g.Expect(in.get(t, "/api/now/table/sys_user?sysparm_limit=1", at).status).To(Equal(200))

		in.RevokeToken(at)

		a := in.get(t, "/api/now/table/sys_user?sysparm_limit=1", at)
		g.Expect(a.status).To(Equal(401))
		g.Expect(a.json).To(HaveKeyWithValue("error", HaveKeyWithValue("message", "User Not Authenticated")))
		g.Expect(in.token(t, passwordGrant()).str("access_token")).NotTo(Equal(at))
	})

	t.Run("answers the same for a token it never issued", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})

		g.Expect(in.get(t, "/oauth_revoke_token.do?token=unknown", "").status).To(Equal(200))
		g.Expect(in.RevocationLog()).To(ConsistOf(HaveField("Kind", "")))
		g.Expect(in.Revocations("")).To(BeZero(), "nothing was revoked")
	})

	t.Run("takes the token from a POST form body and records what it revoked, never the token", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		tok := in.token(t, passwordGrant())
		at, rt := tok.str("access_token"), tok.str("refresh_token")

		for _, revoked := range []string{at, rt, at} {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, in.URL()+"/oauth_revoke_token.do",
				strings.NewReader(url.Values{"token": {revoked}}.Encode()))
			g.Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			g.Expect(in.do(t, req).status).To(Equal(200))
		}

		g.Expect(in.get(t, "/api/now/table/sys_user?sysparm_limit=1", at).status).To(Equal(401), "the access token no longer works")
		g.Expect(in.token(t, refreshGrant(rt)).status).To(Equal(401), "the refresh token no longer works")
		g.Expect(in.Revocations(simulator.RevokedAccessToken)).To(Equal(1), "revoking it again revokes nothing")
		g.Expect(in.Revocations(simulator.RevokedRefreshToken)).To(Equal(1))
		log := in.RevocationLog()
		g.Expect(log).To(HaveLen(3))
		g.Expect(log[0]).To(MatchFields(IgnoreExtras, Fields{
			"Kind": Equal(simulator.RevokedAccessToken), "ClientID": Equal(clientID), "Username": Equal(username),
			"Method": Equal(http.MethodPost), "InQuery": BeFalse(), "Status": Equal(200), "Revoked": BeTrue(),
		}))
		g.Expect(log[2].Revoked).To(BeFalse())
		g.Expect(fmt.Sprintf("%+v", log)).NotTo(Or(ContainSubstring(at), ContainSubstring(rt)))
	})

	t.Run("revokes nothing when a fault answers", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		at := in.token(t, passwordGrant()).str("access_token")
		in.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Path: "/oauth_revoke_token.do", Times: 1})

		g.Expect(in.get(t, "/oauth_revoke_token.do?token="+url.QueryEscape(at), "").status).To(Equal(503))

		g.Expect(in.Revocations("")).To(BeZero())
		g.Expect(in.RevocationLog()).To(ConsistOf(MatchFields(IgnoreExtras, Fields{
			"Kind": Equal(simulator.RevokedAccessToken), "InQuery": BeTrue(), "Status": Equal(503), "Fault": Equal(simulator.FaultServerError),
		})))
		g.Expect(in.get(t, "/api/now/table/sys_user?sysparm_limit=1", at).status).To(Equal(200))
	})
}

func TestTableAPI(t *testing.T) {
	g := NewWithT(t)
	in := newInstance(t, simulator.Options{})
	in.AddUser(simulator.User{Username: "another", Password: "x"})
	at := in.token(t, passwordGrant()).str("access_token")

	a := in.get(t, "/api/now/table/sys_user?sysparm_limit=1&sysparm_fields=sys_id", at)

	g.Expect(a.status).To(Equal(200))
	g.Expect(a.header.Get("X-Total-Count")).To(Equal("2"))
	g.Expect(a.json).To(HaveKeyWithValue("result", ConsistOf(And(HaveKey("sys_id"), HaveLen(1)))))

	unauthenticated := in.get(t, "/api/now/table/sys_user", "")
	g.Expect(unauthenticated.status).To(Equal(401))
	g.Expect(unauthenticated.body).To(MatchJSON(
		`{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}`))

	in.AddUser(simulator.User{Username: username, Password: password, Inactive: true})
	g.Expect(in.get(t, "/api/now/table/sys_user", at).status).To(Equal(401), "a deactivated user's token stops working")
}

func TestTableAccessPerTable(t *testing.T) {
	g := NewWithT(t)
	in := newInstance(t, simulator.Options{})
	at := in.token(t, passwordGrant()).str("access_token")
	g.Expect(in.get(t, "/api/now/table/incident", at).status).To(Equal(400), "a table nobody set up is an invalid table")

	in.SetTableAccess("incident", simulator.TableAccess{Rows: 5})
	a := in.get(t, "/api/now/v2/table/incident?sysparm_limit=2", at)
	g.Expect(a.status).To(Equal(200))
	g.Expect(a.header.Get("X-Total-Count")).To(Equal("5"))
	g.Expect(a.json).To(HaveKeyWithValue("result", HaveLen(2)))

	in.SetTableAccess("change_request", simulator.TableAccess{Rows: 0})
	g.Expect(in.get(t, "/api/now/table/change_request", at).body).To(MatchJSON(`{"result":[]}`))

	in.SetTableAccess("incident", simulator.TableAccess{Status: 403, Message: "Missing required api access scope"})
	denied := in.get(t, "/api/now/table/incident", at)
	g.Expect(denied.status).To(Equal(403))
	g.Expect(denied.body).To(MatchJSON(`{"error":{"message":"Missing required api access scope","detail":null},"status":"failure"}`))
	g.Expect(in.get(t, "/api/now/table/incident", "").status).To(Equal(401), "the token is checked first")
	g.Expect(in.TableRequests("incident")).To(Equal(4))
}

func TestRateLimitRuleCountsPerUserAndHour(t *testing.T) {
	g := NewWithT(t)
	in := newInstance(t, simulator.Options{})
	in.SetTableAccess("incident", simulator.TableAccess{Rows: 1})
	at := in.token(t, passwordGrant()).str("access_token")
	g.Expect(in.get(t, "/api/now/table/incident", at).header.Get("X-RateLimit-Limit")).To(BeEmpty(), "no rule, no headers")

	in.SetRateLimit(simulator.RateLimitRule{Limit: 2, SysID: "5f2e4a1bdb3313003a7a52e5ae9619c4"})
	for range 2 {
		a := in.get(t, "/api/now/table/incident", at)
		g.Expect(a.status).To(Equal(200))
		g.Expect(a.header.Get("X-RateLimit-Limit")).To(Equal("2"))
		g.Expect(a.header.Get("X-RateLimit-Rule")).To(Equal("5f2e4a1bdb3313003a7a52e5ae9619c4"))
		g.Expect(a.header.Get("X-RateLimit-Reset")).To(Equal(strconv.FormatInt(in.Now().Truncate(time.Hour).Add(time.Hour).Unix(), 10)))
		g.Expect(a.header.Get("X-RateLimit-Remaining")).To(BeEmpty(), "ServiceNow sends no count of the requests left")
	}
	over := in.get(t, "/api/now/table/incident", at)
	g.Expect(over.status).To(Equal(429))
	g.Expect(over.header.Get("Retry-After")).NotTo(BeEmpty())
	g.Expect(over.body).To(ContainSubstring("Rate limit exceeded"))

	in.Advance(time.Hour)
	g.Expect(in.get(t, "/api/now/table/incident", in.token(t, passwordGrant()).str("access_token")).status).To(Equal(200), "a new hour, a new count")
}

func TestFaults(t *testing.T) {
	t.Run("switches a fault on and off at run time", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})

		in.SetFault(simulator.Fault{Kind: simulator.FaultServerError})
		g.Expect(in.token(t, passwordGrant()).status).To(Equal(503))
		g.Expect(in.token(t, passwordGrant()).status).To(Equal(503))

		in.ClearFault()
		g.Expect(in.token(t, passwordGrant()).status).To(Equal(200))
	})

	t.Run("clears a fault by itself after Times requests", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		in.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 500, Times: 2})

		g.Expect(in.token(t, passwordGrant()).status).To(Equal(500))
		g.Expect(in.token(t, passwordGrant()).status).To(Equal(500))
		g.Expect(in.token(t, passwordGrant()).status).To(Equal(200))
	})

	t.Run("limits a fault to one path", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		in.SetFault(simulator.Fault{Kind: simulator.FaultRateLimited, Path: "/api/now/table/sys_user"})

		at := in.token(t, passwordGrant()).str("access_token")
		g.Expect(at).NotTo(BeEmpty())
		g.Expect(in.get(t, "/api/now/table/sys_user", at).status).To(Equal(429))
	})

	t.Run("shows a hibernation page with 200 on every path", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		in.SetFault(simulator.Fault{Kind: simulator.FaultHibernating})

		for _, a := range []answer{in.token(t, passwordGrant()), in.get(t, "/api/now/table/sys_user", ""), in.get(t, "/", "")} {
			g.Expect(a.status).To(Equal(200))
			g.Expect(a.header.Get("Content-Type")).To(HavePrefix("text/html"))
			g.Expect(a.body).To(ContainSubstring("Your instance is hibernating"))
		}
	})

	t.Run("sends Retry-After and the X-RateLimit headers when rate limiting", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		in.SetFault(simulator.Fault{Kind: simulator.FaultRateLimited, RetryAfter: 42 * time.Second})

		a := in.token(t, passwordGrant())

		g.Expect(a.status).To(Equal(429))
		g.Expect(a.header.Get("Retry-After")).To(Equal("42"))
		g.Expect(a.header.Get("X-RateLimit-Limit")).To(Equal("100"))
		g.Expect(a.header.Get("X-RateLimit-Rule")).NotTo(BeEmpty())
		reset, err := strconv.ParseInt(a.header.Get("X-RateLimit-Reset"), 10, 64)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(time.Unix(reset, 0)).To(BeTemporally("~", in.Now().Add(42*time.Second), 2*time.Second))
		g.Expect(a.json).To(HaveKeyWithValue("error", HaveKeyWithValue("message", "Rate limit exceeded")))
	})

	t.Run("redirects to another host", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		in.SetFault(simulator.Fault{Kind: simulator.FaultRedirect})

		a := in.token(t, passwordGrant())

		g.Expect(a.status).To(Equal(307))
		g.Expect(a.header.Get("Location")).To(Equal("https://sso.example.net/oauth_token.do"))
	})

	t.Run("drops the connection without an answer", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		in.SetFault(simulator.Fault{Kind: simulator.FaultDropConnection})
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, in.URL()+"/oauth_token.do",
			strings.NewReader(passwordGrant().Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")

		_, err := in.http.Do(req) //nolint:bodyclose // there is no response

		g.Expect(err).To(HaveOccurred())
		g.Expect(errors.Is(err, io.EOF) || strings.Contains(err.Error(), "EOF")).To(BeTrue(), "%v", err)
		g.Expect(in.TokenRequestLog()).To(ConsistOf(HaveField("Fault", simulator.FaultDropConnection)))
	})

	t.Run("ends a hung request when it closes", func(t *testing.T) {
		g := NewWithT(t)
		s := simulator.New(simulator.Options{})
		s.SetFault(simulator.Fault{Kind: simulator.FaultHang})
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}}
		requestDone := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+"/oauth_token.do",
				strings.NewReader("grant_type=password"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := hc.Do(req)
			if err == nil {
				_ = resp.Body.Close()
			}
			requestDone <- err
		}()
		g.Eventually(func() int { return s.TokenRequests("", "password") }).Should(Equal(1))

		closed := make(chan struct{})
		go func() { s.Close(); close(closed) }()

		g.Eventually(closed, 5*time.Second).Should(BeClosed())
		g.Eventually(requestDone, 5*time.Second).Should(Receive(HaveOccurred()))
		g.Expect(s.TokenRequestLog()).To(ConsistOf(HaveField("Status", 0)))
	})
}

func TestTokenRequestCounters(t *testing.T) {
	g := NewWithT(t)
	in := newInstance(t, simulator.Options{})
	start := in.Now()
	rt := in.token(t, passwordGrant()).str("refresh_token")
	in.Advance(time.Hour)
	in.token(t, refreshGrant(rt))
	in.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Times: 1})
	in.token(t, refreshGrant(rt))

	g.Expect(in.TokenRequests(clientID, "password")).To(Equal(1))
	g.Expect(in.TokenRequests(clientID, "refresh_token")).To(Equal(2))
	g.Expect(in.TokenRequests("someone-else", "")).To(Equal(0))
	log := in.TokenRequestLog()
	g.Expect(log).To(HaveLen(3))
	g.Expect(log[0]).To(And(HaveField("ClientID", clientID), HaveField("Grant", "password"),
		HaveField("Username", username), HaveField("Status", 200), HaveField("Fault", simulator.FaultKind(""))))
	g.Expect(log[0].Time).To(BeTemporally("~", start, time.Second))
	g.Expect(log[1].Time).To(BeTemporally("~", start.Add(time.Hour), time.Second))
	g.Expect(log[2]).To(And(HaveField("Status", 503), HaveField("Fault", simulator.FaultServerError)))
}

func TestIssueRefreshTokenNeedsAKnownClientAndUser(t *testing.T) {
	g := NewWithT(t)
	in := newInstance(t, simulator.Options{})

	_, err := in.IssueRefreshToken("nobody", username)
	g.Expect(err).To(MatchError(ContainSubstring(`no OAuth client "nobody"`)))
	_, err = in.IssueRefreshToken(clientID, "nobody")
	g.Expect(err).To(MatchError(ContainSubstring(`no user "nobody"`)))

	rt, err := in.IssueRefreshToken(clientID, username)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(in.token(t, refreshGrant(rt)).status).To(Equal(200))
	g.Expect(in.TokenRequests("", "")).To(Equal(1), "issuing is not a request")
}
