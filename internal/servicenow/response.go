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

// maxRetryAfter caps what a server may ask us to wait (Retry-After or
// X-RateLimit-Reset): a bad header must not park a connection for longer than
// an hour. ServiceNow's rate-limit rules count per hour, so a real limit ends
// within one. It is the only cap: callers use Error.RetryAfter as it is.
const maxRetryAfter = time.Hour

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
		return nil, oauthRejection(status, errorBody{code: code, desc: jsonString(wire.ErrorDescription)}, grant)
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
	case !strings.EqualFold(*wire.TokenType, "Bearer") && isShownToken(*wire.TokenType):
		return invalid("token_type is %q, not Bearer", *wire.TokenType)
	case !strings.EqualFold(*wire.TokenType, "Bearer"):
		return invalid("token_type is not Bearer")
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

// classifyAnswer explains an answer of the token endpoint that is not a success:
// hibernation pages, redirects and error statuses. The caller handles 2xx
// bodies (and anything else it considers a success) before calling it.
//
// Nothing of the answer is quoted as it came: the message names the status,
// the error fields when they pass errorBody.render, a redirect target's host
// when it is a DNS name, and a content type when it is a plain media type.
func (c *Client) classifyAnswer(a *answer, grant Grant) *Error {
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
		return withStatus(newError(KindInvalidInstance, nil,
			"the instance redirected (HTTP %d) to %s; snowauth never follows redirects, so that credentials "+
				"are only ever sent to the configured instance: configure the URL the instance really answers on",
			a.status, redirectTarget(a.header.Get("Location"))))
	}
	if a.status >= 200 && a.status < 300 {
		if looksLikeHTML(a) {
			return withStatus(newError(KindInvalidResponse, nil,
				"the instance answered HTTP %d with an HTML page instead of JSON "+
					"(a login, single sign-on, proxy or maintenance page?)", a.status))
		}
		return withStatus(newError(KindInvalidResponse, nil,
			"the instance answered HTTP %d with %s instead of application/json",
			a.status, describeContentType(a.header)))
	}

	body := errorFields(a)
	if a.status == http.StatusUnauthorized || a.status == http.StatusForbidden ||
		a.status == http.StatusBadRequest && body.code != "" {
		// 400 with an OAuth error code is how RFC 6749 servers reject a
		// grant; ServiceNow uses 401, but the meaning is the same.
		return oauthRejection(a.status, body, grant)
	}
	e := &Error{StatusCode: a.status}
	if a.status == http.StatusNotFound {
		e.Kind = KindInvalidInstance
		e.setDetail(body, "no ServiceNow endpoint at this URL (",
			"): is it a ServiceNow instance, with the OAuth plugin active?")
		return e
	}
	c.classifyOther(a, body, e, "; retry after ")
	return e
}

// redirectTarget names where a redirect pointed without quoting its
// Location: the host when it is a DNS name (never the scheme, path, query
// or user information, which may be huge or hold anything), else a phrase.
func redirectTarget(location string) string {
	loc, err := url.Parse(location)
	switch {
	case location == "" || err != nil:
		return "another location"
	case loc.Host == "" && loc.Opaque == "":
		return "another path of the instance"
	}
	// Not lower-cased: scrub must still recognise a secret's base64 form.
	if host := loc.Hostname(); isDNSName(host) {
		return "the host " + host
	}
	return "another host"
}

// describeContentType names the media type of an answer when it is a plain
// type/subtype, without its parameters, and never quotes anything else. It
// keeps the server's case so that scrub still recognises a secret's base64
// form in it.
func describeContentType(h http.Header) string {
	ct := h.Get("Content-Type")
	if ct == "" {
		return "no content type"
	}
	mt, _, _ := strings.Cut(ct, ";")
	if mt = strings.TrimSpace(mt); isShownToken(mt) && strings.Count(mt, "/") == 1 {
		return fmt.Sprintf("content type %q", mt)
	}
	return "an unrecognised content type"
}

// oauthRejection explains a rejected token request. ServiceNow gives the same
// 401 {"error":"server_error", "error_description":"access_denied"} for every
// cause, so the message lists the causes that fit the grant.
func oauthRejection(status int, body errorBody, grant Grant) *Error {
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
	case GrantJWTBearer:
		causes = "the client ID or secret is wrong, the JWT verifier map has no key for the kid (a certificate " +
			"not uploaded, or a JWKS fetched before the key was published), aud is not what the instance " +
			"expects (the client ID by default), the clocks differ by more than its clock skew, the jti " +
			"was used before, or sub names no active user in its user field"
	default:
		causes = "the credentials are wrong, expired or revoked, or the grant is not allowed for this OAuth client"
	}
	e := &Error{Kind: KindAuthenticationFailed, StatusCode: status}
	e.setDetail(body, "ServiceNow rejected the token request (", "): "+causes)
	return e
}

// classifyOther sets e for the answers every request to an instance can
// get alike: 408, 429 (retryIn introduces the Retry-After in the message),
// 5xx, and anything else unexpected.
func (c *Client) classifyOther(a *answer, body errorBody, e *Error, retryIn string) {
	switch {
	case a.status == http.StatusRequestTimeout:
		e.Kind = KindTimeout
		e.setDetail(body, "the instance timed out reading the request (", ")")
	case a.status == http.StatusTooManyRequests:
		e.Kind = KindRateLimited
		e.RetryAfter = retryAfter(a.header, c.now())
		after := ")"
		if e.RetryAfter > 0 {
			after += retryIn + e.RetryAfter.String()
		}
		e.setDetail(body, "ServiceNow is rate limiting requests (", after)
	case a.status >= 500:
		e.Kind = KindInstanceUnavailable
		e.RetryAfter = retryAfter(a.header, c.now())
		e.setDetail(body, "the instance is unavailable (", ")")
	default:
		e.Kind = KindInvalidResponse
		e.setDetail(body, "unexpected answer from the instance (", ")")
	}
}

// errorBody holds the error fields of a JSON error body exactly as the
// server sent them (JSON-decoded, otherwise untouched): an OAuth
// {"error":"…","error_description":"…"} or, with envelope set, a REST API
// {"error":{"message":"…","detail":"…"},"status":"failure"}. Nothing else is
// ever taken from a body, and these only through render.
type errorBody struct {
	envelope   bool
	code, desc string // error and error_description, or error.message and error.detail
}

// serverDetail is a message waiting for its server-supplied part: msg is
// before + body.render(…) + after.
type serverDetail struct {
	body          errorBody
	before, after string
}

// setDetail sets e's message to before + the rendered body + after, and
// keeps the body so that redact can render it again knowing the secrets.
func (e *Error) setDetail(body errorBody, before, after string) {
	e.detail = &serverDetail{body: body, before: before, after: after}
	e.render(nil)
}

// render (re)builds the message and the OAuthError fields from e.detail,
// scrubbing secrets from the fields before judging them.
func (e *Error) render(secrets []string) {
	if e.detail == nil {
		return
	}
	var text string
	e.OAuthError, e.OAuthErrorDescription, text = e.detail.body.render(e.StatusCode, secrets)
	e.msg = e.detail.before + text + e.detail.after
}

// render returns the fields a message may show and the message's detail,
// such as `HTTP 401, error "server_error", error_description "access_denied"`.
// An OAuth error code is shown only when it is an RFC 6749-style code
// (isErrorCode); free text only when, scrubbed of secrets, it is short plain
// text (shownText). Otherwise the detail says that something was left out,
// without quoting any of it.
func (b errorBody) render(status int, secrets []string) (code, desc, detail string) {
	var s strings.Builder
	s.WriteString("HTTP " + strconv.Itoa(status))
	var omitted, omittedDesc bool
	if b.envelope {
		code, omitted = shownText(scrub(b.code, secrets))
	} else if c := scrub(b.code, secrets); isErrorCode(c) {
		code = c
	} else if b.code != "" {
		s.WriteString(", an unrecognised error code")
	}
	if code != "" {
		fmt.Fprintf(&s, ", error %q", code)
	}
	desc, omittedDesc = shownText(scrub(b.desc, secrets))
	if desc != "" {
		label := "error_description"
		if b.envelope {
			label = "detail"
		}
		fmt.Fprintf(&s, ", %s %q", label, desc)
	}
	if omitted || omittedDesc {
		s.WriteString(", a description was omitted (long or not plain text)")
	}
	return code, desc, s.String()
}

// errorFields extracts the error fields of a JSON error body (see errorBody).
// It returns the zero errorBody when there are none.
func errorFields(a *answer) errorBody {
	if !isJSON(mediaType(a.header)) && !bytes.HasPrefix(bytes.TrimSpace(a.body), []byte("{")) {
		return errorBody{}
	}
	var wire struct {
		Error            json.RawMessage `json:"error"`
		ErrorDescription json.RawMessage `json:"error_description"`
	}
	if json.Unmarshal(a.body, &wire) != nil {
		return errorBody{}
	}
	if s := jsonString(wire.Error); s != "" {
		return errorBody{code: s, desc: jsonString(wire.ErrorDescription)}
	}
	var envelope struct {
		Message json.RawMessage `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(wire.Error, &envelope) == nil {
		return errorBody{envelope: true, code: jsonString(envelope.Message), desc: jsonString(envelope.Detail)}
	}
	return errorBody{}
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
