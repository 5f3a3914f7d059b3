package servicenow

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind classifies a failure. Its value is a CamelCase reason that the
// reconciler uses verbatim as a Kubernetes condition reason, so the values are
// part of snowauth's public contract. The package documentation lists, for
// each kind, its typical causes and what a user should do.
type Kind string

const (
	// KindAuthenticationFailed means ServiceNow rejected the credentials or
	// the token. Terminal until a human fixes the credentials.
	KindAuthenticationFailed Kind = "AuthenticationFailed"
	// KindInstanceHibernating means a developer instance answered its
	// hibernation page. Retryable, slowly: someone has to wake the instance.
	KindInstanceHibernating Kind = "InstanceHibernating"
	// KindRateLimited means HTTP 429. Retryable after Error.RetryAfter.
	KindRateLimited Kind = "RateLimited"
	// KindInstanceUnavailable means a 5xx, a refused or dropped connection,
	// or a DNS failure. Retryable.
	KindInstanceUnavailable Kind = "InstanceUnavailable"
	// KindTimeout means no complete answer in time, or the caller gave up.
	// Retryable.
	KindTimeout Kind = "Timeout"
	// KindInvalidResponse means an answer that is not a usable token.
	// Retryable: a proxy or maintenance page in the way is usually
	// temporary.
	KindInvalidResponse Kind = "InvalidResponse"
	// KindTLSError means the instance's certificate could not be verified.
	// Terminal: it needs a CA bundle or a configuration fix.
	KindTLSError Kind = "TLSError"
	// KindInvalidInstance means the instance name or URL breaks a rule, is
	// not allowlisted, redirects elsewhere, or has no token endpoint.
	// Terminal.
	KindInvalidInstance Kind = "InvalidInstance"
	// KindInvalidRequest means the request lacks what its grant needs, or
	// names an unsupported grant. Terminal; nothing was sent to ServiceNow.
	KindInvalidRequest Kind = "InvalidRequest"
)

// Retryable reports whether repeating the same request later can succeed
// without anyone changing configuration or credentials. It is the one place
// that decides terminal versus transient. Unknown kinds count as retryable so
// that a future kind backs off instead of stalling a connection for good.
func (k Kind) Retryable() bool {
	switch k {
	case KindAuthenticationFailed, KindTLSError, KindInvalidInstance, KindInvalidRequest:
		return false
	default:
		return true
	}
}

// Error is the only error type returned by Client methods.
//
// Its message is meant for users (conditions, events, logs): it names the
// HTTP status and ServiceNow's error fields when they are short plain text,
// is at most 512 bytes of printable text, and never contains the client
// secret, the password, a token, the response body or a redirect's Location.
type Error struct {
	// Kind classifies the failure; use Kind.Retryable to decide on retries.
	Kind Kind
	// StatusCode is the HTTP status of the answer, 0 when there was none.
	StatusCode int
	// OAuthError and OAuthErrorDescription are the token endpoint's "error"
	// and "error_description" (ServiceNow sends "server_error" and
	// "access_denied" for every rejection), or the Table API envelope's
	// error.message and error.detail. Each is set only when it is shown in
	// the message: an error code of a-z and "_", free text that is short,
	// plain ASCII and scrubbed of the request's secrets; otherwise empty.
	OAuthError, OAuthErrorDescription string
	// RetryAfter is how long the instance asked us to wait (Retry-After, or
	// X-RateLimit-Reset on a 429), 0 when it did not say.
	RetryAfter time.Duration

	msg   string
	cause error
	// detail, until redact, holds the error fields of the answer as the
	// server sent them, from which render builds msg. It is a pointer so
	// that printing the Error with %#v shows no server text.
	detail *serverDetail
}

// Error returns the user-facing message: printable and at most
// maxMessageLen bytes, whatever the server sent.
func (e *Error) Error() string {
	if e.msg == "" {
		return string(e.Kind)
	}
	return boundMessage(e.msg)
}

// Unwrap returns the underlying network, TLS or context error, if any, so
// errors.Is(err, context.DeadlineExceeded) and errors.As for *x509 errors
// work. It never returns anything that holds a response body.
func (e *Error) Unwrap() error { return e.cause }

// KindOf returns the Kind of the first *Error in err's chain. An error that is
// not an *Error counts as KindInstanceUnavailable (retryable), and nil has no
// kind ("").
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInstanceUnavailable
}

func newError(kind Kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, msg: fmt.Sprintf(format, args...), cause: cause}
}

// redact makes the error final. It renders the server-supplied part of the
// message now that the request's secrets are known, removes those secrets
// (literal and encoded) from every string the error carries, and bounds the
// message. It runs on every error the Client returns, as a last line of
// defence: messages are built from fixed text, but some parts come from the
// server (error fields, a redirect's host) or from the network stack, and a
// misbehaving proxy could echo what it was sent.
func (e *Error) redact(secrets []string) *Error {
	e.render(secrets)
	e.detail = nil // the raw fields must not outlive the rendering
	e.msg = boundMessage(scrub(e.msg, secrets))
	e.OAuthError = scrub(e.OAuthError, secrets)
	e.OAuthErrorDescription = scrub(e.OAuthErrorDescription, secrets)
	return e
}

// maxMessageLen bounds every message: a condition message stays readable
// and a hostile server cannot fill a status, an event or a log line.
const maxMessageLen = 512

// boundMessage replaces anything that is not printable (control characters,
// invalid UTF-8) with a space and cuts s to maxMessageLen bytes at a rune
// boundary, ending it with "…" when it was cut.
func boundMessage(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			plain = false
			break
		}
	}
	if !plain {
		s = strings.Map(func(r rune) rune {
			if r == utf8.RuneError || !unicode.IsPrint(r) {
				return ' '
			}
			return r
		}, s)
	}
	if len(s) <= maxMessageLen {
		return s
	}
	const ellipsis = "…"
	cut := maxMessageLen - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// minSecretLen is the shortest secret redact replaces: shorter values would
// match ordinary words of the message and make it unreadable.
const minSecretLen = 4

// redactedMark replaces a secret; shownText accepts it in free text.
const redactedMark = "[redacted]"

// scrub replaces each secret of at least minSecretLen bytes in s, in its
// literal form and in the encodings a server or a proxy echoing it would
// likely use (see secretForms), with redactedMark.
func scrub(s string, secrets []string) string {
	var forms []string
	for _, secret := range secrets {
		if len(secret) >= minSecretLen {
			forms = append(forms, secretForms(secret)...)
		}
	}
	// Longest first, so that a padded base64 form goes before the raw form
	// it starts with, and a form that contains another goes before it.
	slices.SortFunc(forms, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, form := range forms {
		s = strings.ReplaceAll(s, form, redactedMark)
	}
	return s
}

// secretForms is secret as it is, query- and path-escaped, base64 (standard
// and URL alphabets, padded and raw) and hex (lower and upper case). Forms
// with characters that shownText refuses (%, +, =) are dropped from free text
// anyway; replacing them too covers the rest of the message.
func secretForms(secret string) []string {
	b := []byte(secret)
	h := hex.EncodeToString(b)
	return []string{
		secret,
		url.QueryEscape(secret),
		url.PathEscape(secret),
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		h,
		strings.ToUpper(h),
	}
}

// maxFieldLen bounds server-supplied free text in messages: enough for any
// real error_description, short enough to keep a condition message readable.
const maxFieldLen = 200

// maxCodeLen bounds an OAuth error code; RFC 6749's longest is 23 bytes.
const maxCodeLen = 64

// isErrorCode reports whether s is shown as an OAuth error code: 1 to
// maxCodeLen bytes of a-z and "_", as every RFC 6749 code is.
func isErrorCode(s string) bool {
	if s == "" || len(s) > maxCodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// isPlainText reports whether s holds only letters, digits, spaces and
// .,:;'()_-/ — no %, \, &, #, <, quotes, control characters or non-ASCII,
// which is how a secret travels escaped (percent-encoding, JSON \u escapes,
// HTML entities) and how text pretends to be something else.
func isPlainText(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte(" .,:;'()_-/", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// shownText decides whether server-supplied free text (error_description,
// the REST API's error.message and error.detail), already scrubbed, may be
// quoted in a message: it must be at most maxFieldLen bytes of plain text
// (redactedMark aside). It returns the text without surrounding spaces, or
// omitted when there was text and it is not shown.
func shownText(scrubbed string) (shown string, omitted bool) {
	s := strings.Trim(scrubbed, " ")
	switch {
	case s == "":
		return "", false
	case len(s) > maxFieldLen || !isPlainText(strings.ReplaceAll(s, redactedMark, "")):
		return "", true
	}
	return s, false
}

// isShownToken reports whether a short identifier from a request or an
// answer (a grant, a token type, a media type) may be quoted in a message:
// at most maxCodeLen bytes of letters, digits and "._-+/:".
func isShownToken(s string) bool {
	if s == "" || len(s) > maxCodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("._-+/:", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// cleanField returns s for quoting in a message when it is a short
// identifier (isShownToken), else "(not shown)": messages never carry
// arbitrary bytes from a request or an answer, escaped or not.
func cleanField(s string) string {
	if isShownToken(s) {
		return s
	}
	return "(not shown)"
}

// isDNSName reports whether host is a DNS name of LDH labels, at most 253
// bytes: the only part of a server-supplied URL a message may name.
func isDNSName(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}

// classifyTransportError turns an error from sending a request or reading its
// answer into an *Error. ctx is the request's context: its error is the most
// reliable sign of a timeout or a cancellation, whatever the transport wrapped
// it in.
func (c *Client) classifyTransportError(ctx context.Context, host string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	// Drop net/url's "Post \"https://…\": " prefix: the message names the host.
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	switch ctxErr := ctx.Err(); {
	case errors.Is(ctxErr, context.DeadlineExceeded):
		return newError(KindTimeout, ctxErr, "no complete answer from %s within %v", host, c.timeout)
	case errors.Is(ctxErr, context.Canceled):
		return newError(KindTimeout, ctxErr, "the request to %s was cancelled before it completed", host)
	}

	detail := transportDetail(err)
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalidCert      x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
		recordHeader     tls.RecordHeaderError
		alert            tls.AlertError
		dnsErr           *net.DNSError
		netErr           net.Error
	)
	switch {
	case errors.As(err, &hostname):
		return newError(KindTLSError, err,
			"the TLS certificate of %s is for another host%s; use the host name the certificate names", host, detail)
	case errors.As(err, &unknownAuthority):
		return newError(KindTLSError, err,
			"cannot verify the TLS certificate of %s%s; if the instance uses a private CA, add it to the CA bundle", host, detail)
	case errors.As(err, &invalidCert), errors.As(err, &verification):
		return newError(KindTLSError, err, "cannot verify the TLS certificate of %s%s", host, detail)
	case errors.As(err, &recordHeader):
		return newError(KindTLSError, err, "%s does not speak TLS on this port%s", host, detail)
	case errors.As(err, &alert):
		return newError(KindTLSError, err, "TLS handshake with %s failed%s", host, detail)
	case errors.As(err, &dnsErr):
		return newError(KindInstanceUnavailable, err, "cannot resolve %s%s", host, detail)
	case errors.As(err, &netErr) && netErr.Timeout():
		return newError(KindTimeout, err, "timed out talking to %s%s", host, detail)
	case errors.Is(err, syscall.ECONNREFUSED):
		return newError(KindInstanceUnavailable, err, "%s refused the connection", host)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return newError(KindInstanceUnavailable, err, "%s closed the connection before answering", host)
	default:
		return newError(KindInstanceUnavailable, err, "cannot reach %s%s", host, detail)
	}
}

// maxTransportDetailLen bounds the network or TLS error text a message shows.
const maxTransportDetailLen = 300

// transportDetail is ": " + err's text when that text is short and plain
// (isPlainText, plus "*" for wildcard names and "[]" for IPv6 addresses).
// Network and TLS errors sometimes quote the answer, escaped: a malformed
// header or status line, HTTP/2 GOAWAY debug data, a certificate's names.
// Those are left out: the message's own words say what failed, and Unwrap
// still returns err for code that needs it.
func transportDetail(err error) string {
	s := err.Error()
	switch {
	case s == "":
		return ""
	case len(s) > maxTransportDetailLen || !isPlainText(strings.NewReplacer("*", "", "[", "", "]", "").Replace(s)):
		return " (the error text is not shown: it is long, or quotes what the server sent)"
	}
	return ": " + s
}
