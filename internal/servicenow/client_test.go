package servicenow_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// Canary values: if one of them ever shows up in an error, a secret leaked.
const (
	clientID           = "snowauth-client"
	canaryClientSecret = "canary-client-secret-5b8e1f"
	canaryPassword     = "canary-password-c0ffee42"
	canaryRefreshToken = "canary-refresh-token-9d7a3c"
	canaryAccessToken  = "canary-access-token-4e2b6d"
	canaryCode         = "canary-authorization-code-61f0aa"
	canaryVerifier     = "canary-code-verifier-3a9f-0123456789-abcdefghijklmnop"
	username           = "svc.snowauth"
	redirectURI        = "https://snowauth.example.com/callback"
)

var canaries = []string{canaryClientSecret, canaryPassword, canaryRefreshToken, canaryAccessToken,
	canaryCode, canaryVerifier}

// testTimeout keeps the hang and latency cases fast.
const testTimeout = 300 * time.Millisecond

// fixture is a simulated instance with one OAuth client and one user whose
// secrets are the canaries, and a client that trusts the simulator's CA.
type fixture struct {
	sim    *simulator.Simulator
	client *servicenow.Client
	base   servicenow.Instance
}

func newFixture(t *testing.T, simOpts simulator.Options, change ...func(*servicenow.Options)) *fixture {
	t.Helper()
	sim := simulator.New(simOpts)
	t.Cleanup(sim.Close)
	sim.AddUser(simulator.User{Username: username, Password: canaryPassword})
	sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: canaryClientSecret, ApplicationUser: username})
	sim.SetClientCredentialsEnabled(true)

	opts := servicenow.Options{
		AllowedDomains: []string{"127.0.0.1", "localhost"},
		CABundle:       sim.CACertPEM(),
		Timeout:        testTimeout,
	}
	for _, c := range change {
		c(&opts)
	}
	client, err := servicenow.NewClient(opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	base, err := client.ResolveInstance(sim.URL())
	if err != nil {
		t.Fatalf("ResolveInstance(%s): %v", sim.URL(), err)
	}
	return &fixture{sim: sim, client: client, base: base}
}

func (f *fixture) request(grant servicenow.Grant) servicenow.TokenRequest {
	return servicenow.TokenRequest{
		Instance: f.base,
		Grant:    grant,
		Credentials: servicenow.Credentials{
			ClientID: clientID, ClientSecret: canaryClientSecret,
			Username: username, Password: canaryPassword,
			RefreshToken: canaryRefreshToken,
			Code:         canaryCode, RedirectURI: redirectURI, CodeVerifier: canaryVerifier,
		},
	}
}

func TestTokenGrants(t *testing.T) {
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fixedClock := func(o *servicenow.Options) { o.Now = func() time.Time { return issued } }

	t.Run("issues an access token and a refresh token with the password grant", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{}, fixedClock)

		tok, err := f.client.Token(context.Background(), f.request(servicenow.GrantPassword))

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(tok.AccessToken).NotTo(BeEmpty())
		g.Expect(tok.RefreshToken).NotTo(BeEmpty())
		g.Expect(tok.TokenType).To(Equal("Bearer"))
		g.Expect(tok.Scope).To(Equal("useraccount"))
		g.Expect(tok.ExpiresIn).To(Equal(1799 * time.Second))
		g.Expect(tok.Expiry).To(Equal(issued.Add(1799 * time.Second)))
		g.Expect(f.sim.TokenRequests(clientID, "password")).To(Equal(1))
	})

	t.Run("issues an access token without a refresh token with the client credentials grant", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{}, fixedClock)

		tok, err := f.client.Token(context.Background(), f.request(servicenow.GrantClientCredentials))

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(tok.AccessToken).NotTo(BeEmpty())
		g.Expect(tok.RefreshToken).To(BeEmpty())
		g.Expect(tok.ExpiresIn).To(Equal(1799 * time.Second))
		g.Expect(f.sim.TokenRequests(clientID, "client_credentials")).To(Equal(1))
	})

	t.Run("returns the same refresh token with the refresh token grant", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{AccessTokenLifespan: time.Hour}, fixedClock)
		refresh, err := f.sim.IssueRefreshToken(clientID, username)
		g.Expect(err).NotTo(HaveOccurred())
		req := f.request(servicenow.GrantRefreshToken)
		req.Credentials.RefreshToken = refresh

		tok, err := f.client.Token(context.Background(), req)

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(tok.AccessToken).NotTo(BeEmpty())
		g.Expect(tok.RefreshToken).To(Equal(refresh))
		g.Expect(tok.ExpiresIn).To(Equal(3599 * time.Second))
		g.Expect(f.sim.TokenRequests(clientID, "refresh_token")).To(Equal(1))
	})

	t.Run("gets a token from a full https URL with a port, as for on-premise instances", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		base, err := f.client.ResolveInstance(f.sim.LocalhostURL())
		g.Expect(err).NotTo(HaveOccurred())
		req := f.request(servicenow.GrantPassword)
		req.Instance = base

		_, err = f.client.Token(context.Background(), req)

		g.Expect(err).NotTo(HaveOccurred())
	})
}

// failureCase is one way a token request fails. Every case also checks that
// no canary appears anywhere in the error.
type failureCase struct {
	name          string
	simOpts       simulator.Options
	setup         func(t *testing.T, f *fixture, req *servicenow.TokenRequest)
	clientOpts    func(*servicenow.Options)
	grant         servicenow.Grant
	wantKind      servicenow.Kind
	wantRetryable bool
	wantStatus    int
	wantInMessage []string
	wantRetry     time.Duration // RetryAfter, when non-zero
	wantRequests  int           // token requests the simulator saw; -1 means do not check
}

func fault(f simulator.Fault) func(*testing.T, *fixture, *servicenow.TokenRequest) {
	return func(_ *testing.T, fx *fixture, _ *servicenow.TokenRequest) { fx.sim.SetFault(f) }
}

func response(status int, contentType, body string) func(*testing.T, *fixture, *servicenow.TokenRequest) {
	return fault(simulator.Fault{Kind: simulator.FaultResponse, Status: status, ContentType: contentType, Body: body})
}

const jsonType = "application/json;charset=UTF-8"

var accessDenied = []string{"HTTP 401", `error "server_error"`, `error_description "access_denied"`}

var failureCases = []failureCase{
	{
		name:  "keeps reason AuthenticationFailed when the client secret is wrong",
		grant: servicenow.GrantPassword,
		setup: func(_ *testing.T, _ *fixture, r *servicenow.TokenRequest) {
			r.Credentials.ClientSecret = "canary-wrong-secret-77"
		},
		wantKind: servicenow.KindAuthenticationFailed, wantStatus: 401, wantRequests: 1,
		wantInMessage: append([]string{"client ID or secret"}, accessDenied...),
	},
	{
		name:  "keeps reason AuthenticationFailed when the password is wrong",
		grant: servicenow.GrantPassword,
		setup: func(_ *testing.T, _ *fixture, r *servicenow.TokenRequest) {
			r.Credentials.Password = "canary-wrong-password-88"
		},
		wantKind: servicenow.KindAuthenticationFailed, wantStatus: 401, wantRequests: 1,
		wantInMessage: append([]string{"username or password"}, accessDenied...),
	},
	{
		name:  "keeps reason AuthenticationFailed when the user is inactive",
		grant: servicenow.GrantPassword,
		setup: func(_ *testing.T, f *fixture, _ *servicenow.TokenRequest) {
			f.sim.AddUser(simulator.User{Username: username, Password: canaryPassword, Inactive: true})
		},
		wantKind: servicenow.KindAuthenticationFailed, wantStatus: 401, wantRequests: 1,
		wantInMessage: accessDenied,
	},
	{
		name:  "keeps reason AuthenticationFailed when the refresh token is past its 100 days",
		grant: servicenow.GrantRefreshToken,
		setup: func(t *testing.T, f *fixture, r *servicenow.TokenRequest) {
			r.Credentials.RefreshToken = issueRefreshToken(t, f)
			f.sim.Advance(100*24*time.Hour + time.Second)
		},
		wantKind: servicenow.KindAuthenticationFailed, wantStatus: 401, wantRequests: 1,
		wantInMessage: append([]string{"refresh token expired or was revoked"}, accessDenied...),
	},
	{
		name:  "keeps reason AuthenticationFailed when the refresh token was revoked",
		grant: servicenow.GrantRefreshToken,
		setup: func(t *testing.T, f *fixture, r *servicenow.TokenRequest) {
			r.Credentials.RefreshToken = issueRefreshToken(t, f)
			f.sim.RevokeToken(r.Credentials.RefreshToken)
		},
		wantKind: servicenow.KindAuthenticationFailed, wantStatus: 401, wantRequests: 1,
		wantInMessage: accessDenied,
	},
	{
		name:  "keeps reason AuthenticationFailed when the instance does not allow client credentials",
		grant: servicenow.GrantClientCredentials,
		setup: func(_ *testing.T, f *fixture, _ *servicenow.TokenRequest) {
			f.sim.SetClientCredentialsEnabled(false)
		},
		wantKind: servicenow.KindAuthenticationFailed, wantStatus: 401, wantRequests: 1,
		wantInMessage: append([]string{"glide.oauth.inbound.client.credential.grant_type.enabled"}, accessDenied...),
	},
	{
		name:  "keeps reason AuthenticationFailed when the OAuth client may not use the grant",
		grant: servicenow.GrantPassword,
		setup: func(_ *testing.T, f *fixture, _ *servicenow.TokenRequest) {
			f.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: canaryClientSecret, Grants: []string{"refresh_token"}})
		},
		wantKind: servicenow.KindAuthenticationFailed, wantStatus: 401, wantRequests: 1,
		wantInMessage: accessDenied,
	},
	{
		name:  "keeps reason AuthenticationFailed and hides secrets a server echoes into error_description",
		grant: servicenow.GrantPassword,
		setup: response(401, jsonType,
			`{"error":"server_error","error_description":"bad secret `+canaryClientSecret+` for password `+canaryPassword+`"}`),
		wantKind: servicenow.KindAuthenticationFailed, wantStatus: 401, wantRequests: 1,
		wantInMessage: []string{"HTTP 401", "[redacted]"},
	},
	{
		name:     "reports InstanceHibernating when the developer instance sleeps",
		grant:    servicenow.GrantPassword,
		setup:    fault(simulator.Fault{Kind: simulator.FaultHibernating}),
		wantKind: servicenow.KindInstanceHibernating, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{"hibernating", "HTTP 200"},
	},
	{
		name:     "reports RateLimited with the Retry-After delay in seconds",
		grant:    servicenow.GrantPassword,
		setup:    fault(simulator.Fault{Kind: simulator.FaultRateLimited, RetryAfter: 30 * time.Second}),
		wantKind: servicenow.KindRateLimited, wantRetryable: true, wantStatus: 429, wantRequests: 1,
		wantRetry:     30 * time.Second,
		wantInMessage: []string{"HTTP 429", "Rate limit exceeded", "retry after 30s"},
	},
	{
		name:     "reports InstanceUnavailable when the instance answers 503",
		grant:    servicenow.GrantClientCredentials,
		setup:    fault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503}),
		wantKind: servicenow.KindInstanceUnavailable, wantRetryable: true, wantStatus: 503, wantRequests: 1,
		wantInMessage: []string{"HTTP 503"},
	},
	{
		name:     "reports InstanceUnavailable when the instance answers 502",
		grant:    servicenow.GrantPassword,
		setup:    fault(simulator.Fault{Kind: simulator.FaultServerError, Status: 502}),
		wantKind: servicenow.KindInstanceUnavailable, wantRetryable: true, wantStatus: 502, wantRequests: 1,
		wantInMessage: []string{"HTTP 502"},
	},
	{
		name:     "reports InstanceUnavailable when the connection drops without an answer",
		grant:    servicenow.GrantPassword,
		setup:    fault(simulator.Fault{Kind: simulator.FaultDropConnection}),
		wantKind: servicenow.KindInstanceUnavailable, wantRetryable: true, wantRequests: 1,
		wantInMessage: []string{"127.0.0.1"},
	},
	{
		name:  "reports InstanceUnavailable when nothing listens on the instance's port",
		grant: servicenow.GrantPassword,
		setup: func(t *testing.T, f *fixture, r *servicenow.TokenRequest) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			_ = ln.Close()
			r.Instance, err = f.client.ResolveInstance("https://" + addr)
			if err != nil {
				t.Fatal(err)
			}
		},
		wantKind: servicenow.KindInstanceUnavailable, wantRetryable: true, wantRequests: 0,
		wantInMessage: []string{"refused the connection"},
	},
	{
		name:     "reports Timeout when the instance never answers",
		grant:    servicenow.GrantPassword,
		setup:    fault(simulator.Fault{Kind: simulator.FaultHang}),
		wantKind: servicenow.KindTimeout, wantRetryable: true, wantRequests: 1,
		wantInMessage: []string{"within 300ms"},
	},
	{
		name:     "reports Timeout when the instance answers after the timeout",
		grant:    servicenow.GrantPassword,
		setup:    fault(simulator.Fault{Kind: simulator.FaultLatency, Latency: 10 * time.Second}),
		wantKind: servicenow.KindTimeout, wantRetryable: true, wantRequests: 1,
		wantInMessage: []string{"within 300ms"},
	},
	{
		name:     "reports InvalidResponse when the JSON is malformed",
		grant:    servicenow.GrantPassword,
		setup:    fault(simulator.Fault{Kind: simulator.FaultMalformedJSON}),
		wantKind: servicenow.KindInvalidResponse, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{"not well-formed JSON"},
	},
	{
		// golang.org/x/oauth2 alone would accept this form-encoded body.
		name:  "reports InvalidResponse when a token comes as text/plain instead of JSON",
		grant: servicenow.GrantPassword,
		setup: response(200, "text/plain",
			"access_token="+canaryAccessToken+"&token_type=Bearer&expires_in=1799"),
		wantKind: servicenow.KindInvalidResponse, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{`content type "text/plain"`},
	},
	{
		name:     "reports InvalidResponse when a login page answers instead of the token endpoint",
		grant:    servicenow.GrantPassword,
		setup:    response(200, "text/html", "<!DOCTYPE html><html><body>Log in</body></html>"),
		wantKind: servicenow.KindInvalidResponse, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{"HTML page"},
	},
	{
		name:     "reports InvalidResponse when access_token is missing",
		grant:    servicenow.GrantPassword,
		setup:    response(200, jsonType, `{"token_type":"Bearer","expires_in":1799,"refresh_token":"`+canaryRefreshToken+`"}`),
		wantKind: servicenow.KindInvalidResponse, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{"access_token is missing"},
	},
	{
		name:     "reports InvalidResponse when the token is not a Bearer token",
		grant:    servicenow.GrantPassword,
		setup:    response(200, jsonType, `{"access_token":"`+canaryAccessToken+`","token_type":"mac","expires_in":1799}`),
		wantKind: servicenow.KindInvalidResponse, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{`token_type is "mac"`},
	},
	{
		name:     "reports InvalidResponse when expires_in is missing",
		grant:    servicenow.GrantPassword,
		setup:    response(200, jsonType, `{"access_token":"`+canaryAccessToken+`","token_type":"Bearer"}`),
		wantKind: servicenow.KindInvalidResponse, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{"expires_in is missing"},
	},
	{
		name:     "reports InvalidResponse when expires_in is zero",
		grant:    servicenow.GrantPassword,
		setup:    response(200, jsonType, `{"access_token":"`+canaryAccessToken+`","token_type":"Bearer","expires_in":0}`),
		wantKind: servicenow.KindInvalidResponse, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{"expires_in is 0, not positive"},
	},
	{
		name:     "reports InvalidResponse when expires_in is absurdly long",
		grant:    servicenow.GrantPassword,
		setup:    response(200, jsonType, `{"access_token":"`+canaryAccessToken+`","token_type":"Bearer","expires_in":99999999999}`),
		wantKind: servicenow.KindInvalidResponse, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{"more than 10 years"},
	},
	{
		name:  "reports TLSError when the instance's CA is not trusted",
		grant: servicenow.GrantPassword,
		clientOpts: func(o *servicenow.Options) {
			o.CABundle = nil
		},
		wantKind: servicenow.KindTLSError, wantRequests: 0,
		wantInMessage: []string{"certificate", "CA bundle"},
	},
	{
		name:    "reports TLSError when the certificate is for another host",
		simOpts: simulator.Options{CertificateHosts: []string{"instance.example.com"}},
		grant:   servicenow.GrantPassword,
		setup: func(t *testing.T, f *fixture, r *servicenow.TokenRequest) {
			var err error
			r.Instance, err = f.client.ResolveInstance(f.sim.LocalhostURL())
			if err != nil {
				t.Fatal(err)
			}
		},
		wantKind:      servicenow.KindTLSError,
		wantRequests:  0,
		wantInMessage: []string{"certificate is valid for instance.example.com, not localhost", "for another host"},
	},
	{
		name:     "reports InvalidInstance when the instance redirects to another host",
		grant:    servicenow.GrantPassword,
		setup:    fault(simulator.Fault{Kind: simulator.FaultRedirect, Location: "https://sso.example.net/login?next=x"}),
		wantKind: servicenow.KindInvalidInstance, wantStatus: 307, wantRequests: 1,
		wantInMessage: []string{"redirected (HTTP 307) to the host sso.example.net;"},
	},
	{
		name:          "reports InvalidInstance when the URL has no token endpoint",
		grant:         servicenow.GrantPassword,
		setup:         response(404, "text/html", "<html>Not Found</html>"),
		wantKind:      servicenow.KindInvalidInstance,
		wantStatus:    404,
		wantRequests:  1,
		wantInMessage: []string{"HTTP 404"},
	},
	{
		name:     "keeps reason AuthenticationFailed when the authorization code is unknown",
		grant:    servicenow.GrantAuthorizationCode,
		wantKind: servicenow.KindAuthenticationFailed, wantStatus: 401, wantRequests: 1,
		wantInMessage: append([]string{"authorization code is unknown, already used or expired", "PKCE code verifier"},
			accessDenied...),
	},
	{
		name:     "reports InvalidResponse when the authorization code grant returns no refresh token",
		grant:    servicenow.GrantAuthorizationCode,
		setup:    response(200, jsonType, `{"access_token":"`+canaryAccessToken+`","token_type":"Bearer","expires_in":1799}`),
		wantKind: servicenow.KindInvalidResponse, wantRetryable: true, wantStatus: 200, wantRequests: 1,
		wantInMessage: []string{"refresh_token is missing", "authorization code grant must return one"},
	},
	{
		name:  "reports InvalidRequest without calling the instance when the authorization code grant has no verifier",
		grant: servicenow.GrantAuthorizationCode,
		setup: func(_ *testing.T, _ *fixture, r *servicenow.TokenRequest) {
			r.Credentials.CodeVerifier = ""
		},
		wantKind: servicenow.KindInvalidRequest, wantRequests: 0,
		wantInMessage: []string{"authorization_code grant needs a PKCE code verifier"},
	},
	{
		name:  "reports InvalidRequest without calling the instance when the code verifier breaks RFC 7636",
		grant: servicenow.GrantAuthorizationCode,
		setup: func(_ *testing.T, _ *fixture, r *servicenow.TokenRequest) {
			r.Credentials.CodeVerifier = "canary-too-short"
		},
		wantKind: servicenow.KindInvalidRequest, wantRequests: 0,
		wantInMessage: []string{"43 to 128 characters"},
	},
	{
		name:  "reports InvalidRequest without calling the instance when the password grant has no password",
		grant: servicenow.GrantPassword,
		setup: func(_ *testing.T, _ *fixture, r *servicenow.TokenRequest) {
			r.Credentials.Password = ""
		},
		wantKind: servicenow.KindInvalidRequest, wantRequests: 0,
		wantInMessage: []string{"password grant needs a password"},
	},
}

func issueRefreshToken(t *testing.T, f *fixture) string {
	t.Helper()
	rt, err := f.sim.IssueRefreshToken(clientID, username)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func TestTokenFailures(t *testing.T) {
	for _, tc := range failureCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var clientOpts []func(*servicenow.Options)
			if tc.clientOpts != nil {
				clientOpts = append(clientOpts, tc.clientOpts)
			}
			f := newFixture(t, tc.simOpts, clientOpts...)
			req := f.request(tc.grant)
			if tc.setup != nil {
				tc.setup(t, f, &req)
			}
			secrets := append(slicesClone(canaries), req.Credentials.ClientSecret, req.Credentials.Password,
				req.Credentials.RefreshToken, req.Credentials.Code, req.Credentials.CodeVerifier)

			tok, err := f.client.Token(context.Background(), req)

			g.Expect(tok).To(BeNil())
			t.Logf("error: %v", err)
			var e *servicenow.Error
			g.Expect(errors.As(err, &e)).To(BeTrue(), "want *servicenow.Error, got %T: %v", err, err)
			g.Expect(e.Kind).To(Equal(tc.wantKind), "error: %v", err)
			g.Expect(servicenow.KindOf(err)).To(Equal(tc.wantKind))
			g.Expect(e.Kind.Retryable()).To(Equal(tc.wantRetryable))
			g.Expect(e.StatusCode).To(Equal(tc.wantStatus))
			for _, want := range tc.wantInMessage {
				g.Expect(err.Error()).To(ContainSubstring(want))
			}
			if tc.wantRetry != 0 {
				g.Expect(e.RetryAfter).To(Equal(tc.wantRetry))
			}
			if tc.wantRequests >= 0 {
				g.Expect(f.sim.TokenRequests("", "")).To(Equal(tc.wantRequests))
			}
			expectNoSecrets(g, err, secrets)
		})
	}
}

// expectNoSecrets checks every way an error can be printed or inspected.
func expectNoSecrets(g Gomega, err error, secrets []string) {
	var e *servicenow.Error
	g.Expect(errors.As(err, &e)).To(BeTrue())
	renderings := []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e),
		e.OAuthError, e.OAuthErrorDescription}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		renderings = append(renderings, u.Error())
	}
	for _, r := range renderings {
		for _, s := range secrets {
			if s != "" {
				g.Expect(r).NotTo(ContainSubstring(s), "an error leaks a secret")
			}
		}
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// Every kind must be exercised by a failure case, so that a new kind cannot
// be added without showing its reason, retry advice and secret hygiene.
func TestEveryFailureKindHasACase(t *testing.T) {
	g := NewWithT(t)
	covered := map[servicenow.Kind]bool{}
	for _, tc := range failureCases {
		covered[tc.wantKind] = true
	}
	for _, k := range []servicenow.Kind{
		servicenow.KindAuthenticationFailed, servicenow.KindInstanceHibernating, servicenow.KindRateLimited,
		servicenow.KindInstanceUnavailable, servicenow.KindTimeout, servicenow.KindInvalidResponse,
		servicenow.KindTLSError, servicenow.KindInvalidInstance, servicenow.KindInvalidRequest,
	} {
		g.Expect(covered).To(HaveKey(k))
	}
}

func TestRateLimitWithHTTPDate(t *testing.T) {
	g := NewWithT(t)
	var f *fixture
	f = newFixture(t, simulator.Options{}, func(o *servicenow.Options) {
		// Share the simulator's clock, as a real client shares wall time
		// with the instance.
		o.Now = func() time.Time { return f.sim.Now() }
	})
	f.sim.Advance(72 * time.Hour)
	f.sim.SetFault(simulator.Fault{Kind: simulator.FaultRateLimited, RetryAfter: 90 * time.Second, RetryAfterDate: true})

	_, err := f.client.Token(context.Background(), f.request(servicenow.GrantPassword))

	var e *servicenow.Error
	g.Expect(errors.As(err, &e)).To(BeTrue())
	g.Expect(e.Kind).To(Equal(servicenow.KindRateLimited))
	// An HTTP date has whole seconds, so up to one second is lost.
	g.Expect(e.RetryAfter).To(BeNumerically("~", 90*time.Second, time.Second))
}

func TestTimeoutsAndCancellation(t *testing.T) {
	t.Run("gives up after Options.Timeout when the instance hangs", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultHang})

		start := time.Now()
		_, err := f.client.Token(context.Background(), f.request(servicenow.GrantPassword))

		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindTimeout))
		g.Expect(errors.Is(err, context.DeadlineExceeded)).To(BeTrue())
		g.Expect(time.Since(start)).To(BeNumerically(">=", testTimeout))
		g.Expect(time.Since(start)).To(BeNumerically("<", 5*time.Second))
	})

	t.Run("stops when the caller cancels while the instance hangs", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{}, func(o *servicenow.Options) { o.Timeout = time.Minute })
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultHang})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := f.client.Token(ctx, f.request(servicenow.GrantPassword))
			done <- err
		}()
		g.Eventually(func() int { return f.sim.TokenRequests(clientID, "password") }).Should(Equal(1))

		cancel()

		var err error
		g.Eventually(done).Should(Receive(&err))
		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindTimeout))
		g.Expect(errors.Is(err, context.Canceled)).To(BeTrue())
		g.Expect(err.Error()).To(ContainSubstring("cancelled"))
	})

	t.Run("succeeds when the instance is slow but within the timeout", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{}, func(o *servicenow.Options) { o.Timeout = 5 * time.Second })
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultLatency, Latency: 50 * time.Millisecond})

		_, err := f.client.Token(context.Background(), f.request(servicenow.GrantPassword))

		g.Expect(err).NotTo(HaveOccurred())
	})
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t, simulator.Options{})
	// A second instance that would happily accept the credentials.
	elsewhere := simulator.New(simulator.Options{})
	t.Cleanup(elsewhere.Close)
	elsewhere.AddUser(simulator.User{Username: username, Password: canaryPassword})
	elsewhere.AddClient(simulator.OAuthClient{ID: clientID, Secret: canaryClientSecret})

	for _, status := range []int{301, 302, 303, 307, 308} {
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultRedirect, Status: status,
			Location: elsewhere.LocalhostURL() + "/oauth_token.do"})

		_, err := f.client.Token(context.Background(), f.request(servicenow.GrantPassword))

		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindInvalidInstance), "HTTP %d", status)
		g.Expect(err.Error()).To(ContainSubstring(fmt.Sprintf("HTTP %d", status)))
	}
	g.Expect(elsewhere.TokenRequests("", "")).To(Equal(0), "credentials were sent to the redirect target")
	g.Expect(f.sim.TokenRequests("", "")).To(Equal(5))
}

func TestCustomCABundle(t *testing.T) {
	t.Run("trusts an on-premise instance whose private CA is in the bundle", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})

		_, err := f.client.Token(context.Background(), f.request(servicenow.GrantPassword))

		g.Expect(err).NotTo(HaveOccurred())
	})

	t.Run("adds the bundle to the system trust store instead of replacing it", func(t *testing.T) {
		g := NewWithT(t)
		// SSL_CERT_FILE is read once per process by crypto/x509, so this
		// test cannot swap the system store; it checks that a bundle of
		// several certificates (one of them the simulator's) works.
		other := simulator.New(simulator.Options{})
		t.Cleanup(other.Close)
		f := newFixture(t, simulator.Options{}, func(o *servicenow.Options) {
			o.CABundle = append(other.CACertPEM(), o.CABundle...)
		})

		_, err := f.client.Token(context.Background(), f.request(servicenow.GrantPassword))

		g.Expect(err).NotTo(HaveOccurred())
	})

	for _, tc := range []struct {
		name   string
		bundle string
		want   string
	}{
		{"refuses a CA bundle without any PEM certificate", "not a certificate", "no PEM certificate"},
		{"refuses a CA bundle holding a private key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a CERTIFICATE"},
		{"refuses a CA bundle with a corrupt certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "PEM block 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := servicenow.NewClient(servicenow.Options{CABundle: []byte(tc.bundle)})
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}

func TestRetryAdvice(t *testing.T) {
	g := NewWithT(t)
	terminal := []servicenow.Kind{servicenow.KindAuthenticationFailed, servicenow.KindTLSError,
		servicenow.KindInvalidInstance, servicenow.KindInvalidRequest}
	transient := []servicenow.Kind{servicenow.KindInstanceHibernating, servicenow.KindRateLimited,
		servicenow.KindInstanceUnavailable, servicenow.KindTimeout, servicenow.KindInvalidResponse,
		servicenow.Kind("SomeFutureKind")}
	for _, k := range terminal {
		g.Expect(k.Retryable()).To(BeFalse(), "%s", k)
	}
	for _, k := range transient {
		g.Expect(k.Retryable()).To(BeTrue(), "%s", k)
	}
	g.Expect(servicenow.KindOf(nil)).To(BeEmpty())
	g.Expect(servicenow.KindOf(errors.New("plain"))).To(Equal(servicenow.KindInstanceUnavailable))
	g.Expect(servicenow.KindOf(fmt.Errorf("wrapped: %w", &servicenow.Error{Kind: servicenow.KindTLSError}))).
		To(Equal(servicenow.KindTLSError))
}

func TestCredentialsAndTokensDoNotPrintSecrets(t *testing.T) {
	g := NewWithT(t)
	req := servicenow.TokenRequest{Grant: servicenow.GrantPassword, Credentials: servicenow.Credentials{
		ClientID: clientID, ClientSecret: canaryClientSecret, Username: username, Password: canaryPassword,
		RefreshToken: canaryRefreshToken, Code: canaryCode, RedirectURI: redirectURI, CodeVerifier: canaryVerifier,
	}}
	tok := servicenow.Token{AccessToken: canaryAccessToken, RefreshToken: canaryRefreshToken, TokenType: "Bearer"}
	for _, printed := range []string{
		fmt.Sprintf("%v", req), fmt.Sprintf("%+v", req), fmt.Sprintf("%v", &req), fmt.Sprint(req.Credentials),
		fmt.Sprintf("%v", tok), fmt.Sprintf("%+v", &tok), fmt.Sprint(tok.MarshalLog(), req.Credentials.MarshalLog()),
	} {
		for _, s := range canaries {
			g.Expect(printed).NotTo(ContainSubstring(s))
		}
	}
	g.Expect(fmt.Sprint(req.Credentials)).To(ContainSubstring(clientID))
}
