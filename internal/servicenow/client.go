package servicenow

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// DefaultTimeout bounds a whole request (connect, TLS, send, wait, read) when
// Options.Timeout is zero. ServiceNow answers token requests in well under a
// second; 30 s leaves room for a slow instance without letting one stuck
// request hold up a reconcile worker for long.
const DefaultTimeout = 30 * time.Second

// maxStepTimeout bounds the dial and the TLS handshake on their own, so that
// an unreachable host fails fast even with a long overall timeout.
const maxStepTimeout = 10 * time.Second

// maxBodySize bounds how much of an answer is read. A token response is a few
// hundred bytes; oauth2 uses the same 1 MiB limit.
const maxBodySize = 1 << 20

// userAgent lets instance administrators see who calls oauth_token.do in
// their transaction logs.
const userAgent = "snowauth"

// Options configure a Client. The zero value is usable.
type Options struct {
	// AllowedDomains are the domain suffixes (or exact hosts, or IP
	// addresses) instances may live under; nil or empty means
	// DefaultAllowedDomains. "*." and "." prefixes are ignored.
	AllowedDomains []string
	// CABundle holds extra PEM certificates trusted in addition to the
	// system trust store (which honours SSL_CERT_FILE and SSL_CERT_DIR), for
	// on-premise instances behind a private CA. TLS is always verified.
	CABundle []byte
	// Timeout bounds a whole request; zero means DefaultTimeout. The dial
	// and the TLS handshake are each bounded by at most 10 s as well.
	Timeout time.Duration
	// Now is the clock used for Token.Expiry and HTTP-date Retry-After
	// values; nil means time.Now.
	Now func() time.Time
	// Transport replaces the HTTP transport built from CABundle and the
	// timeouts, for tests. The Client still sets its own headers, never
	// follows redirects and applies Timeout as a context deadline.
	Transport http.RoundTripper
}

// Client asks ServiceNow instances for OAuth tokens. Create it once with
// NewClient and share it: it is safe for concurrent use and reuses
// connections.
type Client struct {
	allowedDomains []string
	timeout        time.Duration
	now            func() time.Time
	transport      http.RoundTripper
}

// NewClient checks opts and builds a Client. It fails on an allowlist entry
// that is not a domain name or IP address, and on a CA bundle that is not a
// sequence of PEM certificates, so configuration mistakes surface at start-up.
func NewClient(opts Options) (*Client, error) {
	domains, err := normalizeAllowedDomains(opts.AllowedDomains)
	if err != nil {
		return nil, err
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v is negative", opts.Timeout)
	}
	c := &Client{
		allowedDomains: domains,
		timeout:        opts.Timeout,
		now:            opts.Now,
		transport:      opts.Transport,
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	pool, err := certPool(opts.CABundle)
	if err != nil {
		return nil, err
	}
	if c.transport == nil {
		c.transport = newTransport(pool, c.timeout)
	}
	return c, nil
}

// certPool returns the system trust store plus the bundle's certificates.
// Every PEM block must be a parseable certificate: silently skipping a broken
// one would turn a typo into a TLSError much later. Text between blocks is
// ignored, as bundles often carry "# Issuer: …" comments.
func certPool(bundle []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		// No system store (unusual outside Linux containers without
		// ca-certificates): the bundle alone must do.
		pool = x509.NewCertPool()
	}
	if len(bundle) == 0 {
		return pool, nil
	}
	rest := bundle
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("CA bundle: PEM block %d is a %q, not a CERTIFICATE", n, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: PEM block %d: %w", n, err)
		}
		pool.AddCert(cert)
	}
	if n == 0 {
		return nil, errors.New("CA bundle contains no PEM certificate")
	}
	return pool, nil
}

func newTransport(pool *x509.CertPool, timeout time.Duration) *http.Transport {
	// No ResponseHeaderTimeout: the overall timeout is a context deadline
	// set per call, and a second timer for the same moment would only race
	// with it and make the error depend on which fired first.
	step := min(timeout, maxStepTimeout)
	dialer := &net.Dialer{Timeout: step, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: step,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 4,
		ForceAttemptHTTP2:   true,
	}
}

// answer is a complete HTTP response with its body read; truncated says
// the body was longer than the limit it was read with, and holds its start.
type answer struct {
	status    int
	header    http.Header
	body      []byte
	truncated bool
}

// send performs one HTTP exchange with the instance and reads the whole
// (bounded) body, so that every network failure, including one while reading
// the body, is classified here. It does not follow redirects: it uses the
// transport directly, and a 3xx is returned like any other answer.
func (c *Client) send(req *http.Request) (*answer, *Error) {
	a, e := c.exchange(req, maxBodySize)
	if e == nil && a.truncated {
		return nil, &Error{Kind: KindInvalidResponse, StatusCode: a.status,
			msg: fmt.Sprintf("the answer from %s (HTTP %d) is larger than %d bytes", req.URL.Host, a.status, maxBodySize)}
	}
	return a, e
}

// exchange is send reading at most limit bytes of the body: the rest is
// neither read nor waited for.
func (c *Client) exchange(req *http.Request, limit int) (*answer, *Error) {
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	host := req.URL.Host
	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		return nil, c.classifyTransportError(req.Context(), host, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, c.classifyTransportError(req.Context(), host, err)
	}
	a := &answer{status: resp.StatusCode, header: resp.Header, body: body}
	if len(body) > limit {
		a.body, a.truncated = body[:limit], true
	}
	return a, nil
}

// response rebuilds an *http.Response around the already-read body, for
// oauth2, which reads the answer again after the exchange accepted it.
func (a *answer) response(req *http.Request) *http.Response {
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", a.status, http.StatusText(a.status)),
		StatusCode:    a.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        a.header,
		Body:          io.NopCloser(bytes.NewReader(a.body)),
		ContentLength: int64(len(a.body)),
		Request:       req,
	}
}

// withTimeout applies the Client's overall timeout to one call.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// endpoint joins a checked base URL and a path.
func endpoint(base *url.URL, path string) string {
	return base.String() + path
}
