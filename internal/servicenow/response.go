package servicenow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxExpiresIn is the longest expires_in accepted. ServiceNow's default is
// 1799 s and administrators can raise the lifespan, but a value beyond ten
// years is not a lifespan anyone configured: it is garbage (an overflow, a
// timestamp sent instead of a duration) and would postpone the next refresh
// past any useful horizon.
const maxExpiresIn = 10 * 365 * 24 * time.Hour

// maxRetryAfter caps what a server may ask us to wait, so that a bogus
// Retry-After cannot park a connection for months. ServiceNow's rate-limit
// rules count per hour.
const maxRetryAfter = 24 * time.Hour

// parseTokenResponse validates the body of a 2xx (status) answer from
// oauth_token.do to a request for grant, and returns the token without its
// Expiry (the caller knows the issue time). It is strict where strictness protects users (a token that would break an
// Authorization header, a type other than Bearer, a missing or absurd
// lifetime) and lenient where real servers differ harmlessly (expires_in as a
// JSON string, token_type in any case, unknown fields).
func parseTokenResponse(status int, body []byte, grant Grant) (*Token, *Error) {
	invalid := func(format string, args ...any) (*Token, *Error) {
		e := newError(KindInvalidResponse, nil, "the token response (HTTP %d) is invalid: %s",
			status, fmt.Sprintf(format, args...))
		e.StatusCode = status
		return nil, e
	}
	var wire struct {
		AccessToken      *string         `json:"access_token"`
		TokenType        *string         `json:"token_type"`
		ExpiresIn        json.RawMessage `json:"expires_in"`
		RefreshToken     *string         `json:"refresh_token"`
		Scope            *string         `json:"scope"`
		Error            json.RawMessage `json:"error"`
		ErrorDescription json.RawMessage `json:"error_description"`
	}
	if err := json.Unmarshal(body, &wire); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return invalid("%s is a JSON %s, not a string", typeErr.Field, typeErr.Value)
		}
		if errors.As(err, &typeErr) {
			return invalid("it is a JSON %s, not an object", typeErr.Value)
		}
		// Syntax errors quote a character of the body at most; say less.
		return invalid("it is not well-formed JSON")
	}
	// A 2xx carrying an OAuth error is a rejection: RFC 6749 servers use
	// 400, but some answer 200, and the error is what matters.
	if code := jsonString(wire.Error); code != "" {
		return nil, oauthRejection(status, cleanField(code), cleanField(jsonString(wire.ErrorDescription)), grant)
	}

	tok := &Token{}
	switch {
	case wire.AccessToken == nil:
		return invalid("access_token is missing")
	case *wire.AccessToken == "":
		return invalid("access_token is empty")
	case !isTokenString(*wire.AccessToken):
		return invalid("access_token contains characters that cannot be sent in an HTTP header")
	}
	tok.AccessToken = *wire.AccessToken

	switch {
	case wire.TokenType == nil:
		return invalid("token_type is missing")
	case !strings.EqualFold(*wire.TokenType, "Bearer"):
		return invalid("token_type is %q, not Bearer", cleanField(*wire.TokenType))
	}
	tok.TokenType = "Bearer"

	expiresIn, msg := parseExpiresIn(wire.ExpiresIn)
	if msg != "" {
		return invalid("%s", msg)
	}
	tok.ExpiresIn = expiresIn

	if wire.RefreshToken != nil && *wire.RefreshToken != "" {
		if !isTokenString(*wire.RefreshToken) {
			return invalid("refresh_token contains characters that cannot be sent in a form body")
		}
		tok.RefreshToken = *wire.RefreshToken
	}
	if grant == GrantAuthorizationCode && tok.RefreshToken == "" {
		// The refresh token is the whole point of a person authorising
		// snowauth: without it the authorisation is spent for nothing.
		return invalid("refresh_token is missing, and the authorization code grant must return one")
	}
	if wire.Scope != nil {
		tok.Scope = *wire.Scope
	}
	return tok, nil
}

// parseExpiresIn accepts a positive whole number of seconds, as a JSON number
// or (as some servers send it) a JSON string, and explains anything else.
func parseExpiresIn(raw json.RawMessage) (time.Duration, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, "expires_in is missing"
	}
	text := string(raw)
	if raw[0] == '"' {
		if json.Unmarshal(raw, &text) != nil {
			return 0, "expires_in is not a number"
		}
		text = strings.TrimSpace(text)
	}
	n, err := strconv.ParseInt(text, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, "expires_in is out of range"
	case err != nil:
		if _, ferr := strconv.ParseFloat(text, 64); ferr == nil {
			return 0, "expires_in is not a whole number of seconds"
		}
		return 0, "expires_in is not a number"
	case n <= 0:
		return 0, fmt.Sprintf("expires_in is %d, not positive", n)
	case n > int64(maxExpiresIn/time.Second):
		return 0, fmt.Sprintf("expires_in is %d seconds, more than 10 years", n)
	}
	return time.Duration(n) * time.Second, ""
}

// isTokenString reports whether s can go into an Authorization header and a
// Kubernetes Secret unharmed: visible ASCII only. ServiceNow's opaque tokens
// and JWTs both fit.
func isTokenString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// jsonString returns raw as a string if it is a JSON string, else "".
func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// mediaType returns the lower-case media type of a Content-Type header, or ""
// when it is missing or malformed.
func mediaType(h http.Header) string {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return strings.ToLower(mt)
}

func isJSON(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// isHibernationPage recognises a developer instance's hibernation page by its
// text, as other ServiceNow clients do: it is an ordinary HTML page served
// with 200 on every path.
func isHibernationPage(a *answer) bool {
	mt := mediaType(a.header)
	if mt != "text/html" && mt != "" && mt != "text/plain" {
		return false
	}
	lower := bytes.ToLower(a.body)
	return bytes.Contains(lower, []byte("instance is hibernating")) ||
		bytes.Contains(lower, []byte("instance hibernating"))
}

func looksLikeHTML(a *answer) bool {
	if mediaType(a.header) == "text/html" {
		return true
	}
	start := bytes.ToLower(bytes.TrimSpace(a.body[:min(len(a.body), 512)]))
	return bytes.HasPrefix(start, []byte("<!doctype html")) || bytes.HasPrefix(start, []byte("<html"))
}

// which endpoint an answer came from changes what a 401 or a 403 means.
type endpointKind int

const (
	tokenEndpoint endpointKind = iota
	tableEndpoint
)

// classifyAnswer explains an answer that is not a success for its endpoint:
// hibernation pages, redirects and error statuses. The caller handles 2xx
// bodies (and anything else it considers a success) before calling it.
func (c *Client) classifyAnswer(a *answer, ep endpointKind, grant Grant) *Error {
	withStatus := func(e *Error) *Error {
		e.StatusCode = a.status
		return e
	}
	if isHibernationPage(a) {
		return withStatus(newError(KindInstanceHibernating, nil,
			"the instance is hibernating (HTTP %d with the developer-instance hibernation page); "+
				"wake it from developer.servicenow.com", a.status))
	}
	if a.status >= 300 && a.status < 400 {
		where := "another location"
		if loc, err := url.Parse(a.header.Get("Location")); err == nil && loc.Host != "" {
			where = fmt.Sprintf("%q", loc.Scheme+"://"+loc.Host)
		}
		return withStatus(newError(KindInvalidInstance, nil,
			"the instance redirected (HTTP %d) to %s; snowauth never follows redirects, so that credentials "+
				"are only ever sent to the configured instance: configure the URL the instance really answers on",
			a.status, where))
	}
	if a.status >= 200 && a.status < 300 {
		if looksLikeHTML(a) {
			return withStatus(newError(KindInvalidResponse, nil,
				"the instance answered HTTP %d with an HTML page instead of JSON "+
					"(a login, single sign-on, proxy or maintenance page?)", a.status))
		}
		return withStatus(newError(KindInvalidResponse, nil,
			"the instance answered HTTP %d with content type %q instead of application/json",
			a.status, cleanField(a.header.Get("Content-Type"))))
	}

	code, desc := errorFields(a)
	if ep == tokenEndpoint && (a.status == http.StatusUnauthorized || a.status == http.StatusForbidden ||
		a.status == http.StatusBadRequest && code != "") {
		// 400 with an OAuth error code is how RFC 6749 servers reject a
		// grant; ServiceNow uses 401, but the meaning is the same.
		return oauthRejection(a.status, code, desc, grant)
	}
	e := &Error{StatusCode: a.status, OAuthError: code, OAuthErrorDescription: desc}
	detail := statusDetail(a.status, code, desc)
	switch {
	case a.status == http.StatusUnauthorized:
		e.Kind, e.msg = KindAuthenticationFailed, fmt.Sprintf(
			"ServiceNow does not accept the access token (%s): it expired, was revoked, or its user is inactive", detail)
	case a.status == http.StatusNotFound:
		e.Kind, e.msg = KindInvalidInstance, fmt.Sprintf(
			"no ServiceNow endpoint at this URL (%s): is it a ServiceNow instance, with the OAuth plugin active?", detail)
	case a.status == http.StatusRequestTimeout:
		e.Kind, e.msg = KindTimeout, fmt.Sprintf("the instance timed out reading the request (%s)", detail)
	case a.status == http.StatusTooManyRequests:
		e.Kind = KindRateLimited
		e.RetryAfter = retryAfter(a.header, c.now())
		e.msg = fmt.Sprintf("ServiceNow is rate limiting requests (%s)", detail)
		if e.RetryAfter > 0 {
			e.msg += fmt.Sprintf("; retry after %v", e.RetryAfter)
		}
	case a.status >= 500:
		e.Kind = KindInstanceUnavailable
		e.RetryAfter = retryAfter(a.header, c.now())
		e.msg = fmt.Sprintf("the instance is unavailable (%s)", detail)
	default:
		e.Kind, e.msg = KindInvalidResponse, fmt.Sprintf("unexpected answer from the instance (%s)", detail)
	}
	return e
}

// oauthRejection explains a rejected token request; code and desc are already
// cleaned. ServiceNow gives the same 401 {"error":"server_error",
// "error_description":"access_denied"} for every cause, so the message lists
// the causes that fit the grant.
func oauthRejection(status int, code, desc string, grant Grant) *Error {
	var causes string
	switch grant {
	case GrantPassword:
		causes = "the client ID or secret is wrong, the username or password is wrong, the user is inactive " +
			"or locked out, or the password grant is not allowed for this OAuth client"
	case GrantRefreshToken:
		causes = "the client ID or secret is wrong, or the refresh token expired or was revoked " +
			"(ServiceNow refresh tokens die at issue + their lifespan, 100 days by default, and refreshing " +
			"does not extend them): authorise again to get a new one"
	case GrantClientCredentials:
		causes = "the client ID or secret is wrong, or the instance does not allow the client credentials " +
			"grant (system property glide.oauth.inbound.client.credential.grant_type.enabled must be true " +
			"and the OAuth client needs an OAuth Application User)"
	case GrantAuthorizationCode:
		causes = "the client ID or secret is wrong, the authorization code is unknown, already used or " +
			"expired (codes are single-use and short-lived), the redirect URI differs from the one sent to " +
			"oauth_auth.do, or the PKCE code verifier does not match the challenge: authorise again"
	default:
		causes = "the credentials are wrong, expired or revoked, or the grant is not allowed for this OAuth client"
	}
	return &Error{
		Kind: KindAuthenticationFailed, StatusCode: status,
		OAuthError: code, OAuthErrorDescription: desc,
		msg: fmt.Sprintf("ServiceNow rejected the token request (%s): %s", statusDetail(status, code, desc), causes),
	}
}

// statusDetail renders "HTTP 401, error "server_error", error_description
// "access_denied"" from already cleaned fields.
func statusDetail(status int, code, desc string) string {
	s := "HTTP " + strconv.Itoa(status)
	if code != "" {
		s += fmt.Sprintf(", error %q", code)
	}
	if desc != "" {
		s += fmt.Sprintf(", error_description %q", desc)
	}
	return s
}

// errorFields extracts the error fields of a JSON error body: an OAuth
// {"error":"…","error_description":"…"} or a REST API envelope
// {"error":{"message":"…","detail":"…"},"status":"failure"}. Only these
// fields are ever taken from a body, cleaned.
func errorFields(a *answer) (code, desc string) {
	if !isJSON(mediaType(a.header)) && !bytes.HasPrefix(bytes.TrimSpace(a.body), []byte("{")) {
		return "", ""
	}
	var wire struct {
		Error            json.RawMessage `json:"error"`
		ErrorDescription json.RawMessage `json:"error_description"`
	}
	if json.Unmarshal(a.body, &wire) != nil {
		return "", ""
	}
	if s := jsonString(wire.Error); s != "" {
		return cleanField(s), cleanField(jsonString(wire.ErrorDescription))
	}
	var envelope struct {
		Message json.RawMessage `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(wire.Error, &envelope) == nil {
		return cleanField(jsonString(envelope.Message)), cleanField(jsonString(envelope.Detail))
	}
	return "", ""
}

// retryAfter reads Retry-After (delay in seconds or an HTTP date) and, when it
// is absent, ServiceNow's X-RateLimit-Reset (a UNIX time). It returns 0 when
// neither says anything usable, and never more than maxRetryAfter.
func retryAfter(h http.Header, now time.Time) time.Duration {
	d, ok := parseRetryAfter(h.Get("Retry-After"), now)
	if !ok {
		if reset, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64); err == nil {
			d, ok = time.Unix(reset, 0).Sub(now), true
		}
	}
	if !ok || d < 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

// parseRetryAfter parses an RFC 9110 Retry-After value, delay-seconds or an
// HTTP date, relative to now. ok is false when v is neither.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true // too many digits for int64 is "much too long" too
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return t.Sub(now), true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
