package servicenow

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	. "github.com/onsi/gomega"
)

func TestParseTokenResponse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		want    *Token
		wantErr string
		kind    Kind
	}{
		{
			name: "accepts ServiceNow's password grant response",
			body: `{"access_token":"F0jh-x_y.z~+/=","refresh_token":"w599","scope":"useraccount","token_type":"Bearer","expires_in":1799}`,
			want: &Token{AccessToken: "F0jh-x_y.z~+/=", RefreshToken: "w599", Scope: "useraccount", TokenType: "Bearer", ExpiresIn: 1799 * time.Second},
		},
		{
			name: "accepts a client credentials response without a refresh token",
			body: `{"access_token":"a","scope":"useraccount","token_type":"Bearer","expires_in":1799}`,
			want: &Token{AccessToken: "a", Scope: "useraccount", TokenType: "Bearer", ExpiresIn: 1799 * time.Second},
		},
		{
			name: "accepts token_type in any case and expires_in as a string",
			body: `{"access_token":"a","token_type":"bearer","expires_in":"3600","format":"opaque"}`,
			want: &Token{AccessToken: "a", TokenType: "Bearer", ExpiresIn: time.Hour},
		},
		{
			name: "treats an empty refresh_token as none",
			body: `{"access_token":"a","token_type":"Bearer","expires_in":60,"refresh_token":""}`,
			want: &Token{AccessToken: "a", TokenType: "Bearer", ExpiresIn: time.Minute},
		},
		{name: "rejects a body that is not JSON", body: `<html>`, wantErr: "not well-formed JSON"},
		{name: "rejects trailing garbage", body: `{"access_token":"a"} x`, wantErr: "not well-formed JSON"},
		{name: "rejects a JSON array", body: `[]`, wantErr: "JSON array, not an object"},
		{name: "rejects a missing access token", body: `{"token_type":"Bearer","expires_in":1799}`, wantErr: "access_token is missing"},
		{name: "rejects an empty access token", body: `{"access_token":"","token_type":"Bearer","expires_in":1799}`, wantErr: "access_token is empty"},
		{name: "rejects an access token that is a number", body: `{"access_token":5,"token_type":"Bearer","expires_in":1799}`, wantErr: "access_token is a JSON number, not a string"},
		{name: "rejects an access token with a space", body: `{"access_token":"a b","token_type":"Bearer","expires_in":1799}`, wantErr: "cannot be sent in an HTTP header"},
		{name: "rejects an access token with a newline", body: `{"access_token":"a\nb","token_type":"Bearer","expires_in":1799}`, wantErr: "cannot be sent in an HTTP header"},
		{name: "rejects a missing token_type", body: `{"access_token":"a","expires_in":1799}`, wantErr: "token_type is missing"},
		{name: "rejects a MAC token", body: `{"access_token":"a","token_type":"mac","expires_in":1799}`, wantErr: `token_type is "mac", not Bearer`},
		{name: "rejects a missing expires_in", body: `{"access_token":"a","token_type":"Bearer"}`, wantErr: "expires_in is missing"},
		{name: "rejects a null expires_in", body: `{"access_token":"a","token_type":"Bearer","expires_in":null}`, wantErr: "expires_in is missing"},
		{name: "rejects a zero expires_in", body: `{"access_token":"a","token_type":"Bearer","expires_in":0}`, wantErr: "expires_in is 0, not positive"},
		{name: "rejects a negative expires_in", body: `{"access_token":"a","token_type":"Bearer","expires_in":-5}`, wantErr: "expires_in is -5, not positive"},
		{name: "rejects a fractional expires_in", body: `{"access_token":"a","token_type":"Bearer","expires_in":1799.5}`, wantErr: "not a whole number of seconds"},
		{name: "rejects an expires_in in exponent form", body: `{"access_token":"a","token_type":"Bearer","expires_in":1e3}`, wantErr: "not a whole number of seconds"},
		{name: "rejects an expires_in that is not a number", body: `{"access_token":"a","token_type":"Bearer","expires_in":"soon"}`, wantErr: "expires_in is not a number"},
		{name: "rejects an expires_in over ten years", body: `{"access_token":"a","token_type":"Bearer","expires_in":315360001}`, wantErr: "more than 10 years"},
		{name: "rejects an expires_in beyond int64", body: `{"access_token":"a","token_type":"Bearer","expires_in":99999999999999999999}`, wantErr: "out of range"},
		{name: "rejects a refresh token with control characters", body: `{"access_token":"a","token_type":"Bearer","expires_in":1,"refresh_token":"r\u0000"}`, wantErr: "refresh_token contains characters"},
		{
			name: "treats an OAuth error in a 200 answer as a rejection",
			body: `{"error":"invalid_grant","error_description":"expired"}`, kind: KindAuthenticationFailed,
			wantErr: `ServiceNow rejected the token request (HTTP 200, error "invalid_grant", error_description "expired")`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)

			tok, err := parseTokenResponse(200, []byte(tc.body), GrantPassword)

			if tc.wantErr == "" {
				g.Expect(err).To(BeNil())
				g.Expect(tok).To(Equal(tc.want))
				return
			}
			g.Expect(tok).To(BeNil())
			g.Expect(err).NotTo(BeNil())
			want := tc.kind
			if want == "" {
				want = KindInvalidResponse
			}
			g.Expect(err.Kind).To(Equal(want))
			g.Expect(err.StatusCode).To(Equal(200))
			g.Expect(err.Error()).To(ContainSubstring(tc.wantErr))
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"reads delay-seconds", http.Header{"Retry-After": {"120"}}, 2 * time.Minute},
		{"reads an HTTP date", http.Header{"Retry-After": {"Fri, 01 May 2026 10:00:45 GMT"}}, 45 * time.Second},
		{"reads an obsolete RFC 850 date", http.Header{"Retry-After": {"Friday, 01-May-26 10:01:00 GMT"}}, time.Minute},
		{"treats a date in the past as now", http.Header{"Retry-After": {"Fri, 01 May 2026 09:00:00 GMT"}}, 0},
		{"caps an absurd delay at an hour", http.Header{"Retry-After": {"99999999999999999999999"}}, time.Hour},
		{"caps a delay of a day at an hour", http.Header{"Retry-After": {"86400"}}, time.Hour},
		{"caps an HTTP date next week at an hour", http.Header{"Retry-After": {"Fri, 08 May 2026 10:00:00 GMT"}}, time.Hour},
		{"caps an X-RateLimit-Reset a day away at an hour", http.Header{"X-Ratelimit-Reset": {fmt.Sprint(now.Add(24 * time.Hour).Unix())}}, time.Hour},
		{"keeps a delay of exactly an hour", http.Header{"Retry-After": {"3600"}}, time.Hour},
		{"ignores garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"ignores a negative delay", http.Header{"Retry-After": {"-5"}}, 0},
		{"falls back to X-RateLimit-Reset", http.Header{"X-Ratelimit-Reset": {fmt.Sprint(now.Add(10 * time.Minute).Unix())}}, 10 * time.Minute},
		{"prefers Retry-After to X-RateLimit-Reset", http.Header{"Retry-After": {"5"}, "X-Ratelimit-Reset": {fmt.Sprint(now.Add(time.Hour).Unix())}}, 5 * time.Second},
		{"says nothing without either header", http.Header{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(retryAfter(tc.header, now)).To(Equal(tc.want))
		})
	}
}

// TestClassifyTransportError covers failures the simulator cannot produce
// on a machine without network: DNS, and the raw error shapes net/http uses.
func TestClassifyTransportError(t *testing.T) {
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want Kind
		text string
	}{
		{"reports InstanceUnavailable when DNS cannot resolve the host", context.Background(),
			&url.Error{Op: "Post", URL: "https://x", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "dev0.service-now.com", IsNotFound: true}}},
			KindInstanceUnavailable, "cannot resolve dev0.service-now.com"},
		{"reports InstanceUnavailable when the connection is refused", context.Background(),
			&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, KindInstanceUnavailable, "refused the connection"},
		{"reports InstanceUnavailable when the connection is reset", context.Background(),
			&net.OpError{Op: "read", Err: syscall.ECONNRESET}, KindInstanceUnavailable, "closed the connection"},
		{"reports InstanceUnavailable on an unexpected EOF", context.Background(), io.ErrUnexpectedEOF, KindInstanceUnavailable, "closed the connection"},
		{"reports Timeout when the deadline passed, whatever the error says", expired, errors.New("net/http: request canceled"), KindTimeout, "within 30s"},
		{"reports Timeout when the caller cancelled", cancelled, errors.New("whatever"), KindTimeout, "cancelled"},
		{"reports Timeout on a dial timeout", context.Background(), &net.OpError{Op: "dial", Err: timeoutError{}}, KindTimeout, "timed out"},
		{"reports TLSError on an unknown authority", context.Background(), x509.UnknownAuthorityError{}, KindTLSError, "CA bundle"},
		{"reports TLSError on an expired certificate", context.Background(),
			x509.CertificateInvalidError{Reason: x509.Expired}, KindTLSError, "cannot verify"},
		{"keeps an already classified error", context.Background(),
			&url.Error{Err: &Error{Kind: KindRateLimited, msg: "slow down"}}, KindRateLimited, "slow down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := (&Client{timeout: 30 * time.Second}).classifyTransportError(tc.ctx, "dev0.service-now.com", tc.err)
			g.Expect(e.Kind).To(Equal(tc.want))
			g.Expect(e.Error()).To(ContainSubstring(tc.text))
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestCleanFieldQuotesOnlyShortIdentifiers(t *testing.T) {
	g := NewWithT(t)
	g.Expect(cleanField("urn:ietf:params:oauth:grant-type:jwt-bearer")).To(Equal("urn:ietf:params:oauth:grant-type:jwt-bearer"))
	g.Expect(cleanField("jwt_bearer")).To(Equal("jwt_bearer"))
	g.Expect(cleanField("access_denied\r\nX-Injected: 1")).To(Equal("(not shown)"))
	g.Expect(cleanField("%63%61")).To(Equal("(not shown)"))
	g.Expect(cleanField(strings.Repeat("x", 65))).To(Equal("(not shown)"))
	g.Expect(cleanField("")).To(Equal("(not shown)"))
}

// FuzzParseTokenResponse checks the parser's promises on any body: no panic;
// a token is usable (Bearer, header-safe, sane lifetime); an error is
// InvalidResponse or, for an OAuth error body, AuthenticationFailed, and its
// message is short, single-line and never contains the tokens of the body.
func FuzzParseTokenResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseTokenResponse(200, body, GrantRefreshToken)
		if err == nil {
			if tok.TokenType != "Bearer" || !isTokenString(tok.AccessToken) ||
				(tok.RefreshToken != "" && !isTokenString(tok.RefreshToken)) ||
				tok.ExpiresIn <= 0 || tok.ExpiresIn > maxExpiresIn || tok.ExpiresIn%time.Second != 0 {
				t.Fatalf("parseTokenResponse(%q) accepted an unusable token %#v", body, tok)
			}
			return
		}
		if tok != nil {
			t.Fatalf("parseTokenResponse(%q) returned both a token and an error", body)
		}
		if err.Kind != KindInvalidResponse && err.Kind != KindAuthenticationFailed {
			t.Fatalf("parseTokenResponse(%q) error kind %s", body, err.Kind)
		}
		msg := err.Error()
		if len(msg) > maxMessageLen || strings.ContainsFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }) {
			t.Fatalf("parseTokenResponse(%q) error is not a short single line: %q", body, msg)
		}
		var wire map[string]any
		if json.Unmarshal(body, &wire) == nil {
			for _, field := range []string{"access_token", "refresh_token"} {
				if s, ok := wire[field].(string); ok && len(s) >= 12 && strings.Contains(msg, s) {
					t.Fatalf("parseTokenResponse(%q) error %q contains the %s", body, msg, field)
				}
			}
		}
	})
}
