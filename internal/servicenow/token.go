package servicenow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Grant is the OAuth grant_type sent to oauth_token.do.
type Grant string

// The grants snowauth supports (GrantJWTBearer is in jwt.go).
const (
	GrantClientCredentials Grant = "client_credentials"
	GrantPassword          Grant = "password"
	GrantRefreshToken      Grant = "refresh_token"
	// GrantAuthorizationCode exchanges the code ServiceNow's login page
	// (oauth_auth.do, see AuthCodeURL) handed to the redirect URI, with its
	// PKCE verifier, for an access token and a refresh token.
	GrantAuthorizationCode Grant = "authorization_code"
)

// Credentials are what the credentials Secret holds. They are never logged and
// never appear in errors: String and MarshalLog hide them.
type Credentials struct {
	ClientID, ClientSecret string
	Username, Password     string // password grant
	RefreshToken           string // refresh_token grant
	// authorization_code grant: the code from the callback, the redirect URI
	// exactly as sent to oauth_auth.do, and the PKCE verifier whose S256
	// challenge was sent there. Code and CodeVerifier are secrets.
	Code, RedirectURI, CodeVerifier string
	// JWT makes the JWT bearer grant's assertion; its key is a secret.
	JWT *JWTAssertion
	// assertion is the signed assertion of this request, a secret too.
	assertion string
}

// String hides the secrets, so that printing credentials by mistake with %v
// or %+v cannot leak them.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{ClientID: %q, Username: %q, secrets hidden}", c.ClientID, c.Username)
}

// MarshalLog is logr's hook for structured loggers (zap, used by the
// manager, would otherwise encode every field).
func (c Credentials) MarshalLog() any {
	return map[string]string{"clientID": c.ClientID, "username": c.Username}
}

// secrets lists the values errors must never contain.
func (c Credentials) secrets() []string {
	return []string{c.ClientSecret, c.Password, c.RefreshToken, c.Code, c.CodeVerifier, c.assertion}
}

// TokenRequest asks one instance for one token.
type TokenRequest struct {
	Instance    Instance // from Client.ResolveInstance
	Grant       Grant
	Credentials Credentials
	// Scopes are sent with the password and client credentials grants. A
	// refresh keeps the scope of the grant that issued the refresh token
	// (oauth2 sends none, as RFC 6749 allows). ServiceNow's classic clients
	// always get "useraccount".
	Scopes []string
}

// Token is a validated token response.
type Token struct {
	AccessToken  string
	TokenType    string        // always "Bearer"
	RefreshToken string        // empty for client credentials, or when the response carried none
	Scope        string        // ServiceNow sends "useraccount"
	ExpiresIn    time.Duration // as sent
	Expiry       time.Time     // issue time (Options.Now when the request started) + ExpiresIn
}

// String hides the tokens, so that printing a Token with %v cannot leak them.
func (t Token) String() string {
	return fmt.Sprintf("Token{%s, scope %q, expires in %v at %s, refresh token: %t}",
		t.TokenType, t.Scope, t.ExpiresIn, t.Expiry.Format(time.RFC3339), t.RefreshToken != "")
}

// MarshalLog is logr's hook for structured loggers; it hides the tokens.
func (t Token) MarshalLog() any {
	return map[string]any{"tokenType": t.TokenType, "scope": t.Scope, "expiry": t.Expiry,
		"hasRefreshToken": t.RefreshToken != ""}
}

// grantFlow is how one grant is checked and sent. fetch uses golang.org/x/oauth2
// to build and send the request; the exchange behind ctx's HTTP client reads
// and judges the answer.
//
// A new grant is one more entry here.
type grantFlow struct {
	// missing names the first credential the grant needs but lacks, or "".
	missing func(Credentials) string
	// invalid, if set, explains a credential the grant cannot send as it
	// is, or returns "". It runs after missing, and must not quote secrets.
	invalid func(Credentials) string
	fetch   func(ctx context.Context, tokenURL string, req TokenRequest) error
}

var grantFlows = map[Grant]grantFlow{
	GrantPassword: {
		missing: func(c Credentials) string {
			return firstEmpty(c.ClientID, "client ID", c.ClientSecret, "client secret",
				c.Username, "username", c.Password, "password")
		},
		fetch: func(ctx context.Context, tokenURL string, req TokenRequest) error {
			_, err := oauthConfig(tokenURL, req).PasswordCredentialsToken(ctx,
				req.Credentials.Username, req.Credentials.Password)
			return err
		},
	},
	GrantRefreshToken: {
		missing: func(c Credentials) string {
			return firstEmpty(c.ClientID, "client ID", c.ClientSecret, "client secret",
				c.RefreshToken, "refresh token")
		},
		fetch: func(ctx context.Context, tokenURL string, req TokenRequest) error {
			// A token without an access token is invalid, so the source
			// refreshes at once: exactly one refresh_token request.
			_, err := oauthConfig(tokenURL, req).TokenSource(ctx,
				&oauth2.Token{RefreshToken: req.Credentials.RefreshToken}).Token()
			return err
		},
	},
	GrantClientCredentials: {
		missing: func(c Credentials) string {
			return firstEmpty(c.ClientID, "client ID", c.ClientSecret, "client secret")
		},
		fetch: func(ctx context.Context, tokenURL string, req TokenRequest) error {
			_, err := clientConfig(tokenURL, req, nil).Token(ctx)
			return err
		},
	},
	GrantJWTBearer: {
		missing: jwtMissing,
		invalid: jwtInvalid,
		fetch: func(ctx context.Context, tokenURL string, req TokenRequest) error {
			// EndpointParams may replace grant_type, which RFC 7523 needs.
			_, err := clientConfig(tokenURL, req, url.Values{
				"grant_type": {string(GrantJWTBearer)},
				"assertion":  {req.Credentials.assertion},
			}).Token(ctx)
			return err
		},
	},
	GrantAuthorizationCode: {
		missing: func(c Credentials) string {
			return firstEmpty(c.ClientID, "client ID", c.ClientSecret, "client secret",
				c.Code, "authorization code", c.RedirectURI, "redirect URI",
				c.CodeVerifier, "PKCE code verifier")
		},
		invalid: func(c Credentials) string {
			if !isCodeVerifier(c.CodeVerifier) {
				return "the PKCE code verifier must be 43 to 128 characters from A-Z, a-z, 0-9 and \"-._~\" (RFC 7636)"
			}
			return ""
		},
		fetch: func(ctx context.Context, tokenURL string, req TokenRequest) error {
			// Exchange sends grant_type, code, redirect_uri and the
			// verifier, plus client_id and client_secret (AuthStyleInParams),
			// and no scope: the code carries the scope the user granted.
			cfg := oauthConfig(tokenURL, req)
			cfg.RedirectURL = req.Credentials.RedirectURI
			_, err := cfg.Exchange(ctx, req.Credentials.Code, oauth2.VerifierOption(req.Credentials.CodeVerifier))
			return err
		},
	},
}

// isCodeVerifier reports whether v is an RFC 7636 code verifier: 43 to 128
// unreserved characters.
func isCodeVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// oauthConfig is the oauth2 configuration for ServiceNow: credentials in the
// form body, never auto-detected (auto-detection would first try HTTP Basic
// and then send the secret a second time).
func oauthConfig(tokenURL string, req TokenRequest) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     req.Credentials.ClientID,
		ClientSecret: req.Credentials.ClientSecret,
		Endpoint:     oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams},
		Scopes:       req.Scopes,
	}
}

// clientConfig is the client credentials configuration for ServiceNow,
// with the credentials in the form body, plus params.
func clientConfig(tokenURL string, req TokenRequest, params url.Values) *clientcredentials.Config {
	return &clientcredentials.Config{
		ClientID:       req.Credentials.ClientID,
		ClientSecret:   req.Credentials.ClientSecret,
		TokenURL:       tokenURL,
		Scopes:         req.Scopes,
		AuthStyle:      oauth2.AuthStyleInParams,
		EndpointParams: params,
	}
}

// firstEmpty takes (value, name) pairs and returns the name of the first
// empty value.
func firstEmpty(pairs ...string) string {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] == "" {
			return pairs[i+1]
		}
	}
	return ""
}

// Token asks the instance for a token with req.Grant. It sends exactly one
// HTTP request (none when the request is incomplete), waits at most
// Options.Timeout, and returns either a validated token or an *Error.
func (c *Client) Token(ctx context.Context, req TokenRequest) (*Token, error) {
	tok, err := c.token(ctx, &req)
	if err != nil {
		return nil, err.redact(req.Credentials.secrets())
	}
	return tok, nil
}

// token takes req by pointer so that Token redacts what token added to it
// (the signed assertion).
func (c *Client) token(ctx context.Context, req *TokenRequest) (*Token, *Error) {
	flow, ok := grantFlows[req.Grant]
	if !ok {
		return nil, newError(KindInvalidRequest, nil, "grant %q is not supported", cleanField(string(req.Grant)))
	}
	if req.Instance.IsZero() {
		return nil, invalidInstance("no instance was given")
	}
	base := req.Instance.base
	if name := flow.missing(req.Credentials); name != "" {
		return nil, newError(KindInvalidRequest, nil, "the %s grant needs a %s, and it is empty", req.Grant, name)
	}
	if flow.invalid != nil {
		if msg := flow.invalid(req.Credentials); msg != "" {
			return nil, newError(KindInvalidRequest, nil, "the %s grant cannot be sent: %s", req.Grant, msg)
		}
	}

	if req.Grant == GrantJWTBearer {
		// Signed per request, at the moment of sending: a fresh jti, and
		// iat as close to the instance's clock as this one is.
		a, err := req.Credentials.JWT.sign(req.Credentials.ClientID, c.now())
		if err != nil {
			return nil, newError(KindInvalidRequest, nil, "the %s grant cannot be sent: %v", req.Grant, err)
		}
		req.Credentials.assertion = a
	}

	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	x := &exchange{client: c, grant: req.Grant}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{
		Transport: x,
		// exchange never returns a 3xx, but if it ever did, stop there.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	})
	issued := c.now()
	err := flow.fetch(ctx, endpoint(base, "/oauth_token.do"), *req)

	// The exchange's verdict is authoritative: oauth2 only built and sent the
	// request, and every answer that is not a valid token became an *Error
	// inside the exchange.
	if x.token != nil {
		tok := *x.token
		tok.Expiry = issued.Add(tok.ExpiresIn)
		return &tok, nil
	}
	if err == nil {
		// Cannot happen: oauth2 succeeded on an answer the exchange did
		// not accept. Refuse rather than return an unchecked token.
		return nil, newError(KindInvalidResponse, nil, "the token response could not be validated")
	}
	var se *Error
	if errors.As(err, &se) {
		return nil, se
	}
	return nil, c.classifyTransportError(ctx, base.Host, err)
}

// exchange is the http.RoundTripper oauth2 sends one token request through.
// It adds ServiceNow's headers, reads the answer, and either keeps the
// validated token (handing oauth2 the answer unchanged) or returns an
// *Error, which oauth2 passes back inside a *url.Error.
type exchange struct {
	client *Client
	grant  Grant
	token  *Token
}

func (x *exchange) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context()) // a RoundTripper must not modify its request
	a, err := x.client.send(req)
	if err != nil {
		return nil, err
	}
	if a.status >= 200 && a.status < 300 && isJSON(mediaType(a.header)) {
		tok, perr := parseTokenResponse(a.status, a.body, x.grant)
		if perr != nil {
			return nil, perr
		}
		x.token = tok
		return a.response(req), nil
	}
	return nil, x.client.classifyAnswer(a, x.grant)
}
