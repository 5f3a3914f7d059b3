// Package simulator is a ServiceNow instance in a box, faithful where snowauth
// depends on ServiceNow's behaviour: the OAuth token endpoint with its odd
// reuse and expiry rules, revocation, the Table API's authentication check,
// and the ways instances and networks fail. Tests use it in-process; the
// servicenow-simulator program serves it for demos and benchmarks.
//
// It is not a general OAuth server nor a ServiceNow emulator: there is no
// login page (oauth_auth.do), no JWT bearer grant and no table other than
// sys_user yet. The facts it reproduces come from ServiceNow's documentation
// and knowledge base (KB0791140 for token reuse), as collected in snowauth's
// ServiceNow OAuth fact sheet (servicenow-oauth.md).
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
//	revoked tokens               RevokeToken, or GET /oauth_revoke_token.do?token=…
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
//
// TokenRequests and TokenRequestLog count what reached POST /oauth_token.do,
// per client and grant, with the simulator-clock time and the status
// answered, faulted requests included.
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
//   - expires_in is the lifespan minus one second (1799 by default); scope is
//     "useraccount"; token_type is "Bearer".
//   - GET /api/now/table/sys_user answers a valid bearer token with
//     {"result":[…]} and X-Total-Count, anything else with the 401
//     "User Not Authenticated" envelope.
//
// Whether a refresh_token grant extends a still-valid access token is not
// documented; the simulator assumes it does, like every other grant.
package simulator
