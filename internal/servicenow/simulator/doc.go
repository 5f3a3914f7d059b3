// Package simulator is a ServiceNow instance in a box, faithful where snowauth
// depends on ServiceNow's behaviour: the OAuth token endpoint with its odd
// reuse and expiry rules, revocation, the Table API's authentication check,
// and the ways instances and networks fail. Tests use it in-process; the
// servicenow-simulator program serves it for demos and benchmarks.
//
// It is not a general OAuth server nor a ServiceNow emulator: its login page
// (oauth_auth.do) is a plain form rather than ServiceNow's UI, and its tables
// hold sys_ids only (sys_user: the registered users). The facts it reproduces come from
// ServiceNow's documentation and knowledge base (KB0791140 for token reuse),
// as collected in snowauth's ServiceNow OAuth fact sheet (servicenow-oauth.md).
//
// # Scripting an instance
//
//	s := simulator.New(simulator.Options{})                  // HTTPS on 127.0.0.1, own CA
//	defer s.Close()
//	s.AddUser(simulator.User{Username: "svc", Password: "pw"})
//	s.AddClient(simulator.OAuthClient{ID: "id", Secret: "secret"})
//	client, _ := servicenow.NewClient(servicenow.Options{
//		CABundle:       s.CACertPEM(),                        // trust its CA
//		AllowedDomains: []string{"127.0.0.1", "localhost"},
//	})
//	base, _ := client.ResolveInstance(s.URL())
//
// What a test can make the instance do:
//
//	valid tokens                 AddClient, AddUser; IssueRefreshToken skips a password grant
//	same token on every grant    automatic while the access token is valid (expiry extended)
//	expired tokens               Advance moves the clock; SetAccessTokenLifespan, SetRefreshTokenLifespan,
//	                             or per-client OAuthClient.AccessTokenLifespan/RefreshTokenLifespan
//	a dead refresh token         Advance past its lifespan: refresh_token grants never extend it
//	revoked tokens               RevokeToken, or /oauth_revoke_token.do (GET ?token=…, or POST with
//	                             the token in a form body); refreshing or the Table API then get 401
//	401 access_denied            wrong secret or password, Inactive client or user, a grant missing
//	                             from OAuthClient.Grants, client_credentials without
//	                             SetClientCredentialsEnabled(true) and an ApplicationUser
//	a certificate for the wrong  Options.CertificateHosts
//	host
//	hibernation                  SetFault(Fault{Kind: FaultHibernating})
//	5xx                          SetFault(Fault{Kind: FaultServerError, Status: 502})
//	429                          SetFault(Fault{Kind: FaultRateLimited, RetryAfter: 30 * time.Second})
//	slow, hung                   FaultLatency with Latency; FaultHang (ends when the client gives up or Close)
//	broken answers               FaultMalformedJSON; FaultResponse with any Status, ContentType and Body
//	dropped connections          FaultDropConnection
//	redirects                    FaultRedirect (307 to another host by default)
//	one-off faults               Fault.Times (e.g. 1: only the next request); Fault.Path (one endpoint)
//	what a table answers         SetTableAccess(table, TableAccess{Rows: n}) (0: ACLs hide every record),
//	                             or TableAccess{Status: 403, Message: "Missing required api access scope"};
//	                             TableRequests counts the GETs of a table
//	rate limit rules             SetRateLimit(RateLimitRule{Limit: n}): X-RateLimit-* headers on the Table API,
//	                             429 with Retry-After beyond n requests per user and hour
//	a person authorising         OAuthClient.RedirectURL, then Login(ctx, client, authURL, user, password,
//	                             allow): GET+POST oauth_auth.do, returns the redirect (code and state,
//	                             or error=access_denied); authURL may redirect to the simulator first
//	a spent or stale code        exchange it twice (even after a failed exchange), or Advance past
//	                             AuthorizationCodeLifespan (60 s)
//	login-step errors            no state, another redirect_uri, an unknown client, response_type other
//	                             than code, a PKCE method other than S256: 400 text page, never a redirect
//	JWT bearer assertions        OAuthClient.JWT: a verifier map (Certificates, kid -> certificate) and/or
//	                             a JWKSURL served by the test (Options.JWKSClient fetches it)
//	a key published too late     add a kid to the JWKS document: it is unknown until Advance passes
//	                             JWTVerifier.JWKSCacheLifespan (1 h by default); JWKSFetches counts fetches
//	rejected assertions          wrong iss or aud, expired, nbf or iat ahead of ClockSkew, a reused jti,
//	                             an unknown kid, a bad signature, a JWKS that fails or leaks private keys
//
// TokenRequests and TokenRequestLog count what reached POST /oauth_token.do,
// per client and grant, with the simulator-clock time and the status
// answered, faulted requests included. For a rejected jwt-bearer request
// the record's Rejection says which check failed, which the answer does not.
// Revocations and RevocationLog do the same for /oauth_revoke_token.do: the
// kind of token each request named (access or refresh, never the token),
// how it came (method, query or body), and whether it revoked a valid one.
//
// # Behaviour reproduced
//
//   - POST /oauth_token.do takes form bodies only (a JSON body, or credentials
//     in the query string, get the 401 below) with client_id and client_secret
//     in the body.
//   - Every rejection is 401 {"error_description":"access_denied",
//     "error":"server_error"}, whatever the cause.
//   - password returns an access and a refresh token. While the client+user's
//     access token is valid, every grant returns that same access token with
//     its expiry reset to a full lifespan; a password grant also extends the
//     refresh token (KB0791140).
//   - refresh_token returns an access token and the same refresh token
//     string, without extending it: it dies at issue + lifespan.
//   - client_credentials returns no refresh token.
//   - jwt-bearer (grant_type urn:ietf:params:oauth:grant-type:jwt-bearer,
//     RFC 7523) takes the signed JWT in assertion, next to client_id and
//     client_secret, and only for a client with a JWT configuration (the
//     Machine Identity Console's "JWT bearer grant", or the Application
//     Registry's "OAuth JWT API endpoint for external clients" before
//     Zurich). The assertion's kid selects the key: a certificate from the
//     JWT verifier map, or a key from the JWKS URL (Zurich and later), whose
//     document is cached for the JWKS cache lifespan; a kid it lacks is not
//     looked for again until then. alg must be RS256 or ES256. iss must be
//     the client ID and aud the client ID too (as the configuration page
//     says; another ServiceNow page says the token endpoint, so the
//     documentation disagrees). exp is required and must not have passed,
//     nbf and iat must not be in the future, each within the clock skew,
//     whose Machine Identity Console default is 0 s (the old form's was
//     300 s). JTI verification is on by default: each jti is accepted once.
//     sub is the user_name of an active user, whom the token acts as. The
//     answer is the client+user's access token, reused and extended as for
//     every grant, and no refresh token.
//   - GET /oauth_auth.do?response_type=code&client_id=…&redirect_uri=…&state=…
//     [&code_challenge=…&code_challenge_method=S256] answers 200 text/html
//     with a login form whose hidden fields carry the request. POST (those
//     fields plus user_name, user_password and action=allow|deny) answers 302
//     to the redirect URI with code and state, or with error=access_denied and
//     state for deny; a wrong password or an inactive user shows the form
//     again (200). Before any redirect the client must exist and be active and
//     redirect_uri must equal its RedirectURL exactly; otherwise, and for a
//     missing state ("Missing State parameter in request", as on instances
//     with glide.oauth.state.parameter.required, the default since Madrid), a
//     response_type other than code, or a PKCE method other than S256, the
//     answer is a 400 text/plain page.
//   - Codes are random, single-use (spent when presented with valid client
//     credentials, even if the exchange then fails), expire after 60 s of the
//     simulator clock, and are bound to the client, the redirect URI, the user
//     and the S256 challenge. Without a challenge no code_verifier is checked.
//   - authorization_code (POST /oauth_token.do with code, redirect_uri,
//     code_verifier and the client credentials) returns an access token (the
//     current one while valid, as for every grant) and always a new refresh
//     token expiring at now + the refresh lifespan. Re-authorising therefore
//     replaces the client+user's refresh token; earlier ones keep working
//     until their own expiry (whether ServiceNow revokes them is not
//     documented).
//   - expires_in is the lifespan minus one second (1799 by default); scope is
//     "useraccount"; token_type is "Bearer".
//   - /oauth_revoke_token.do takes the token in token, in the query of a GET
//     (as ServiceNow's documentation shows it) or of a POST, or in a POST's
//     form body; it needs no authentication, marks the token expired and
//     answers 200 with no body, whether it knew the token or not. A revoked
//     refresh token gets the 401 above, a revoked access token the Table
//     API's 401, and the client+user's next grant issues a new access token.
//   - GET /api/now/table/sys_user answers a valid bearer token with
//     {"result":[…]} and X-Total-Count, anything else with the 401
//     "User Not Authenticated" envelope; GET /api/now/ui/user/current_user
//     answers it with the token's user (user_name, user_sys_id,
//     user_display_name). Other tables (also under /api/now/v2/table/)
//     answer as SetTableAccess says, after the token check: rows, no rows
//     (200 {"result":[]}, as ACLs that hide every record answer), or a
//     status with the REST API's error envelope (403 "Missing required api
//     access scope" for a REST API auth scope that does not cover the API);
//     a table nobody set up answers 400 "Invalid table". The exact body of
//     ServiceNow's 403 is not documented beyond that message; the simulator
//     sends the usual envelope with a null detail.
//   - A rate limit rule (SetRateLimit) counts each user's Table API requests
//     per hour of the simulator clock. Every answer to a request it matches
//     carries X-RateLimit-Limit, X-RateLimit-Reset (a UNIX time) and
//     X-RateLimit-Rule (the rule's sys_id), as ServiceNow documents; there
//     is no header with the requests left. Beyond the limit: 429 with
//     Retry-After and the "Rate limit exceeded" envelope.
//
// Whether a refresh_token grant extends a still-valid access token is not
// documented; the simulator assumes it does, like every other grant. That an
// authorization_code grant issues a new refresh token rather than extending
// the current one (as a password grant does) is also an assumption, and so
// are the JWKS cache lifespan's default (ServiceNow's documentation we have
// does not state it), that an unknown kid does not trigger an early fetch of
// the JWKS, that a jwt-bearer token shares the client+user's access token
// with the password grant, and that oauth_revoke_token.do reads a POST form
// body as it reads the query (ServiceNow documents only the query).
package simulator
