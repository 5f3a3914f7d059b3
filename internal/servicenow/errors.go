package servicenow

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"
	"unicode"
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
	// KindInvalidResponse means an answer that is not a usable token (or,
	// for the token check, not a Table API answer). Retryable: a proxy or
	// maintenance page in the way is usually temporary.
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
// HTTP status and ServiceNow's error fields when there are any, and never
// contains the client secret, the password, a token or the response body.
type Error struct {
	// Kind classifies the failure; use Kind.Retryable to decide on retries.
	Kind Kind
	// StatusCode is the HTTP status of the answer, 0 when there was none.
	StatusCode int
	// OAuthError and OAuthErrorDescription are the token endpoint's "error"
	// and "error_description" (ServiceNow sends "server_error" and
	// "access_denied" for every rejection), or the Table API envelope's
	// error.message and error.detail. Shortened and scrubbed of secrets.
	OAuthError, OAuthErrorDescription string
	// RetryAfter is how long the instance asked us to wait (Retry-After, or
	// X-RateLimit-Reset on a 429), 0 when it did not say.
	RetryAfter time.Duration

	msg   string
	cause error
}

// Error returns the user-facing message.
func (e *Error) Error() string {
	if e.msg == "" {
		return string(e.Kind)
	}
	return e.msg
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

// NewError returns an *Error with a message, for fakes in the tests of code
// that uses the Client. The message must not contain secrets.
func NewError(kind Kind, message string) *Error {
	return &Error{Kind: kind, msg: message}
}

func newError(kind Kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, msg: fmt.Sprintf(format, args...), cause: cause}
}

// redact removes the given secrets from every string the error carries. It
// runs on every error the Client returns, as a last line of defence: messages
// are built from fixed text, but some parts come from the server (error
// fields) or from the network stack, and a misbehaving proxy could echo what
// it was sent.
func (e *Error) redact(secrets []string) *Error {
	e.msg = scrub(e.msg, secrets)
	e.OAuthError = scrub(e.OAuthError, secrets)
	e.OAuthErrorDescription = scrub(e.OAuthErrorDescription, secrets)
	return e
}

// minSecretLen is the shortest secret redact replaces: shorter values would
// match ordinary words of the message and make it unreadable.
const minSecretLen = 4

func scrub(s string, secrets []string) string {
	for _, secret := range secrets {
		if len(secret) >= minSecretLen {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// maxFieldLen bounds server-supplied strings in errors: enough for any real
// error_description, short enough to keep a condition message readable.
const maxFieldLen = 200

// cleanField makes a server-supplied string safe to show: printable
// characters only, whitespace collapsed, bounded length.
func cleanField(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		case !unicode.IsPrint(r):
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if b.Len() >= maxFieldLen {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
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
			"the TLS certificate of %s is for another host: %v; use the host name the certificate names", host, err)
	case errors.As(err, &unknownAuthority):
		return newError(KindTLSError, err,
			"cannot verify the TLS certificate of %s: %v; if the instance uses a private CA, add it to the CA bundle", host, err)
	case errors.As(err, &invalidCert), errors.As(err, &verification):
		return newError(KindTLSError, err, "cannot verify the TLS certificate of %s: %v", host, err)
	case errors.As(err, &recordHeader):
		return newError(KindTLSError, err, "%s does not speak TLS on this port: %v", host, err)
	case errors.As(err, &alert):
		return newError(KindTLSError, err, "TLS handshake with %s failed: %v", host, err)
	case errors.As(err, &dnsErr):
		return newError(KindInstanceUnavailable, err, "cannot resolve %s: %v", host, err)
	case errors.As(err, &netErr) && netErr.Timeout():
		return newError(KindTimeout, err, "timed out talking to %s: %v", host, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return newError(KindInstanceUnavailable, err, "%s refused the connection", host)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return newError(KindInstanceUnavailable, err, "%s closed the connection before answering", host)
	default:
		return newError(KindInstanceUnavailable, err, "cannot reach %s: %v", host, err)
	}
}
