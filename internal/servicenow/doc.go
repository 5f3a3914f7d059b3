// Package servicenow is snowauth's OAuth client for ServiceNow instances: it
// turns an instance name or URL into a checked base URL, asks the instance's
// oauth_token.do for an access token with one grant, validates the answer, and
// classifies every failure so the reconciler can decide between "retry later"
// and "a human must fix something".
//
// It holds no Kubernetes types and keeps no state between calls: caching,
// scheduling and single-flighting refreshes belong to the caller. A *Client is
// safe for concurrent use.
//
// # Requests
//
// Token requests are built and sent with golang.org/x/oauth2 (and its
// clientcredentials package): POST <base>/oauth_token.do, form-encoded, client
// ID and secret in the body (oauth2.AuthStyleInParams: ServiceNow documents no
// HTTP Basic client authentication), Accept: application/json. The response is
// read and judged by this package, not by oauth2: oauth2 accepts form-encoded
// and text/plain bodies, clamps expires_in, computes expiry from the wall clock,
// drops expires_in for client credentials and puts raw bodies in its error
// text, none of which suits an operator that must explain failures without
// leaking secrets. Redirects are never followed, so credentials are never sent
// to a host other than the configured instance.
//
// # Authorization code grant
//
// A person authorises once in a browser; the Client takes part in the two
// ends only. AuthCodeURL builds the address of the instance's login and
// consent page, <base>/oauth_auth.do with response_type=code, client_id,
// redirect_uri, state (mandatory on new instances) and the PKCE
// code_challenge (S256Challenge of a verifier) with code_challenge_method=S256.
// After the instance redirected to the redirect URI with a code, Token with
// GrantAuthorizationCode exchanges it through oauth2.Config.Exchange: POST
// oauth_token.do with grant_type=authorization_code, code, redirect_uri
// (identical to the one sent to oauth_auth.do), code_verifier, client_id and
// client_secret. The answer must carry a refresh token, else the error is an
// InvalidResponse: the refresh token is what the authorisation was for. The
// code and the verifier are secrets like the client secret. ServiceNow
// answers a bad, reused or expired code, another redirect URI and a verifier
// that does not match alike, with its usual 401 access_denied: an
// AuthenticationFailed error, after which the person must authorise again.
//
// # Probes
//
// Probe GETs one REST path of the instance (such as
// /api/now/table/incident?sysparm_limit=1) with an access token, to find
// out whether the token can do what an application needs: a token
// ServiceNow issued may still be refused by a REST API auth scope (403
// "Missing required api access scope"; scopes are read at run time, so an
// administrator's change applies to tokens already issued), and ACLs answer
// a table query 200 with no rows. The path must start with /api/ and is
// joined to the checked base URL only; a redirect is never followed. A
// probe takes at most ProbeTimeout and reads at most MaxProbeBody bytes.
// Its result carries the X-RateLimit-Limit, X-RateLimit-Reset and
// X-RateLimit-Rule headers when a rate limit rule matched (ServiceNow sends
// no count of the requests left).
//
// # Revocation
//
// Client.Revoke revokes an access or refresh token at
// <base>/oauth_revoke_token.do, which needs no client authentication and
// marks the token expired. ServiceNow documents the token as a query
// parameter (?token=…); Revoke sends it in a POST form body instead, so that
// it is in no URL that proxies or the instance's transaction log record. A
// 2xx answer is success (ServiceNow documents no body); other answers are
// classified like token requests, a 400, 401 or 403 as AuthenticationFailed
// ("the instance refused to revoke the token").
//
// # Failure kinds
//
// Every error returned by Client.Token, Client.Revoke, Client.CurrentUser and
// Client.ResolveInstance is an *Error. Its Kind is the Kubernetes condition
// reason; Kind.Retryable is the one place that says whether retrying can help.
//
//	Kind                  Retry  Typical cause                                  What the user should do
//	AuthenticationFailed  no     HTTP 401 (ServiceNow answers 401              Check the client ID and secret, the user's
//	                             {"error":"server_error",                      password and that the user is active, that the
//	                             "error_description":"access_denied"} for a    grant is enabled; re-authorise when a refresh
//	                             bad secret, bad password, expired or revoked  token expired (they die 100 days after issue
//	                             refresh token and a disabled grant alike);    by default and refreshing does not extend them).
//	                             400 with an OAuth error code; for the
//	                             authorization code grant, a bad, reused or
//	                             expired code, another redirect URI or a
//	                             PKCE verifier that does not match.
//	InstanceHibernating   yes    A developer instance answers 200 text/html    Wake the instance from developer.servicenow.com;
//	                             "Your instance is hibernating".               retry slowly.
//	RateLimited           yes    HTTP 429; RetryAfter comes from Retry-After   Wait RetryAfter; lower the request rate or raise
//	                             (seconds or HTTP date) or X-RateLimit-Reset,  the instance's rate-limit rule.
//	                             at most an hour.
//	InstanceUnavailable   yes    HTTP 5xx, connection refused or dropped,      Usually nothing: retry with backoff. Check the
//	                             DNS failure.                                  instance name and network egress if it persists.
//	Timeout               yes    No complete answer within Options.Timeout,    Retry with backoff; raise the timeout if the
//	                             a dial or TLS handshake timeout, HTTP 408,    instance is slow.
//	                             or the caller cancelled the context.
//	InvalidResponse       yes    2xx that is not a JSON token (wrong content   Retry with backoff (a proxy or a maintenance page
//	                             type, HTML page, malformed JSON, missing or   may be in the way); report it if it persists.
//	                             bad access_token/token_type/expires_in; no
//	                             refresh_token for the authorization code
//	                             grant), an unexpected HTTP status.
//	TLSError              no     Certificate from an unknown authority, for    Add the instance's CA to the CA bundle, or fix
//	                             another host name, expired; not TLS at all.   the instance URL.
//	InvalidInstance       no     Instance name or URL breaks a rule (below),   Fix the instance: use a name such as dev98042 or
//	                             host outside the allowed domains, the         the https:// base URL the instance answers on
//	                             instance redirected elsewhere (3xx), or no    (the one it redirects to, if trusted); ask the
//	                             oauth_token.do there (404).                   operator's admin to allow the domain.
//	InvalidRequest        no     The request itself is incomplete: a grant     Fill in the missing credential (for example the
//	                             without the credentials it needs, a PKCE      password for the password grant) or choose a
//	                             verifier that breaks RFC 7636, an             supported grant.
//	                             unsupported grant.
//
// A redirect is an InvalidInstance error rather than an InstanceUnavailable
// one: a ServiceNow token endpoint never redirects, so a 3xx means the URL
// points at something else (an SSO front door, an old custom domain). Retrying
// cannot fix it, and following it would hand the credentials to another host.
//
// RetryAfter (from Retry-After, or X-RateLimit-Reset on a 429) is never more
// than an hour: a bad header must not park a connection for longer, and
// ServiceNow's rate-limit rules count per hour anyway.
//
// Error messages carry the HTTP status and ServiceNow's error fields, and
// never the client secret, the password, a token, the response body or a
// redirect's Location. Nothing a server sent is quoted as it came, escaped or
// not, since %-escapes, JSON \u escapes and HTML entities are how a secret
// travels disguised:
//
//   - the error code only when it is an RFC 6749-style code: a-z and "_", at
//     most 64 bytes; otherwise the message says it was unrecognised;
//   - error_description, or the REST API's error.message and error.detail,
//     only when, scrubbed of the request's secrets, it is at most 200 bytes
//     of letters, digits, spaces and .,:;'()_-/; otherwise the message says
//     that a description was omitted;
//   - a redirect by its target's host alone, when that is a DNS name;
//   - a network or TLS error's text only when it is short and plain.
//
// Secrets are scrubbed literally and in their query-escaped, path-escaped,
// base64 (standard and URL, padded and raw) and hex forms, and every message
// is at most 512 bytes of printable text.
//
// # Instances
//
// An instance is either an instance name, a single DNS label such as dev98042,
// which means https://dev98042.service-now.com, or an https:// base URL for
// custom domains, *.servicenowservices.com and on-premise instances (a port is
// fine). A URL must not carry user information, a query, a fragment or a path,
// and its host must be a well-formed DNS name or IP address equal to, or under,
// one of Options.AllowedDomains (default service-now.com and
// servicenowservices.com). Instance names map to service-now.com and are
// allowlisted like any other host.
package servicenow
