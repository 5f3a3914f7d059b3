package simulator

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FrontDoor is another way in to the same simulated instance, as a load
// balancer or a reverse proxy in front of a real instance is: its own
// loopback port and its own certificates, in front of the simulator's
// endpoints (the same clients, tokens, faults and counters: a token request
// through the front door counts in TokenRequests like any other).
//
// It adds what goes wrong in front of an instance rather than in it, each
// switched on and off without the instance's address changing:
//
//	connection refused           Down, then Up on the same port
//	answers cut off mid-body     CutResponses: status, headers and part of the body, then the connection closes
//	a certificate from a CA      UseCertificate(CertificateUnknownAuthority)
//	nobody trusts
//	a certificate for another    UseCertificate(CertificateOtherHost)
//	host
//	was anything sent here?      Requests (HTTP requests) and Handshakes (TLS handshakes attempted)
//
// Clients trust it with CACertPEM. Changing the certificate closes the open
// connections, as a load balancer restarted with a new certificate does, so
// the next request makes a new handshake. Call Close when done; closing the
// simulator does not close its front doors.
type FrontDoor struct {
	sim  *Simulator
	addr string // 127.0.0.1:port, the same for the front door's whole life
	// caPEM holds the CA certificates a client must trust: those of the
	// valid certificate and of the one for another host.
	caPEM []byte
	certs map[FrontDoorCertificate]*tls.Certificate

	mu         sync.Mutex   // guards the fields below
	srv        *http.Server // nil while down
	ln         net.Listener
	closed     bool
	cert       FrontDoorCertificate
	cut        int
	requests   int
	handshakes int
}

// FrontDoorCertificate names a certificate a front door can present.
type FrontDoorCertificate string

const (
	// CertificateValid is for localhost and 127.0.0.1, signed by a CA in
	// CACertPEM. It is the default.
	CertificateValid FrontDoorCertificate = "Valid"
	// CertificateUnknownAuthority is for localhost and 127.0.0.1 too, but
	// signed by a CA that is in no bundle: x509.UnknownAuthorityError.
	CertificateUnknownAuthority FrontDoorCertificate = "UnknownAuthority"
	// CertificateOtherHost is signed by a CA in CACertPEM but names only
	// OtherHost: x509.HostnameError for a client that asked for localhost.
	CertificateOtherHost FrontDoorCertificate = "OtherHost"
)

// OtherHost is the only name in CertificateOtherHost.
const OtherHost = "instance.example.com"

// OpenFrontDoor starts a front door on a free loopback port.
func (s *Simulator) OpenFrontDoor() (*FrontDoor, error) {
	valid, err := newCertificateAuthority([]string{"localhost", "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	other, err := newCertificateAuthority([]string{OtherHost})
	if err != nil {
		return nil, err
	}
	unknown, err := newCertificateAuthority([]string{"localhost", "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &FrontDoor{
		sim:   s,
		addr:  ln.Addr().String(),
		caPEM: slices.Concat(valid.caPEM, other.caPEM),
		certs: map[FrontDoorCertificate]*tls.Certificate{
			CertificateValid:            &valid.leaf,
			CertificateOtherHost:        &other.leaf,
			CertificateUnknownAuthority: &unknown.leaf,
		},
		cert: CertificateValid,
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.serve(ln)
	return d, nil
}

// URL is the front door's base URL, https://127.0.0.1:PORT.
func (d *FrontDoor) URL() string { return "https://" + d.addr }

// LocalhostURL is URL with the host name localhost, for clients whose
// allowlist holds domain names.
func (d *FrontDoor) LocalhostURL() string {
	return "https://" + strings.Replace(d.addr, "127.0.0.1", "localhost", 1)
}

// CACertPEM holds the CA certificates that sign CertificateValid and
// CertificateOtherHost, for a client's CA bundle.
func (d *FrontDoor) CACertPEM() []byte { return slices.Clone(d.caPEM) }

// Down closes the port and every connection open through it: connections
// are refused until Up. Requests in flight end without an answer.
func (d *FrontDoor) Down() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down()
}

// Up listens on the front door's port again after Down. It does nothing
// when the front door is up already.
func (d *FrontDoor) Up() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("simulator: the front door is closed")
	}
	if d.srv != nil {
		return nil
	}
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", d.addr)
	if err != nil {
		return err
	}
	d.serve(ln)
	return nil
}

// UseCertificate makes the front door present c from the next handshake on,
// and closes the open connections so that the next request makes one.
func (d *FrontDoor) UseCertificate(c FrontDoorCertificate) error {
	if d.certs[c] == nil {
		return errors.New("simulator: no front-door certificate " + string(c))
	}
	d.mu.Lock()
	d.cert = c
	up := d.srv != nil
	d.down()
	d.mu.Unlock()
	if up {
		return d.Up()
	}
	return nil
}

// CutResponses makes every answer from now on stop after n bytes of its
// body (n > 0; 0 switches it off): the status and the headers arrive, with a
// Content-Length for the whole body, then part of the body (always less than
// all of it), then the connection closes. The instance behind did handle the
// request: a token request is counted, and a token may have been issued.
func (d *FrontDoor) CutResponses(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cut = max(n, 0)
}

// Requests counts the HTTP requests that reached the front door, any path.
func (d *FrontDoor) Requests() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requests
}

// Handshakes counts the TLS handshakes clients started with the front door
// (their ClientHello arrived), including those that then failed: every
// attempt to reach it, even one that never got to send a request.
func (d *FrontDoor) Handshakes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.handshakes
}

// Close stops the front door for good.
func (d *FrontDoor) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.down()
}

// serve starts serving on ln. Callers hold mu.
func (d *FrontDoor) serve(ln net.Listener) {
	cfg := &tls.Config{
		GetCertificate: d.certificate,
		// HTTP/1.1 only, as the simulator: cut answers hijack the
		// connection, which HTTP/2 cannot do.
		NextProtos: []string{"http/1.1"},
	}
	d.srv = &http.Server{
		Handler:           http.HandlerFunc(d.serveHTTP),
		TLSConfig:         cfg,
		ReadHeaderTimeout: 10 * time.Second,
		// Failed handshakes are what certificate tests provoke.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	d.ln = ln
	srv := d.srv
	go func() { _ = srv.Serve(tls.NewListener(ln, cfg)) }()
}

// down closes the listener and the connections. Callers hold mu.
func (d *FrontDoor) down() {
	if d.srv == nil {
		return
	}
	// The listener first and by hand: Serve may not have started yet, and
	// the port must be free for Up when down returns.
	_ = d.ln.Close()
	_ = d.srv.Close()
	d.srv, d.ln = nil, nil
}

func (d *FrontDoor) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handshakes++
	return d.certs[d.cert], nil
}

func (d *FrontDoor) serveHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	d.requests++
	cut := d.cut
	d.mu.Unlock()
	if cut == 0 {
		d.sim.ServeHTTP(w, r)
		return
	}
	rec := &recordedAnswer{w: w, header: http.Header{}}
	d.sim.ServeHTTP(rec, r)
	if rec.status == 0 {
		return // a fault of the simulator hijacked the connection: nothing to cut
	}
	body := rec.body.Bytes()
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	// Announce the whole body (at least one byte, so that something is
	// always missing) and send less.
	w.Header().Set("Content-Length", strconv.Itoa(max(len(body), 1)))
	w.WriteHeader(rec.status)
	_, _ = w.Write(body[:min(cut, max(len(body)-1, 0))])
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	if conn, _, err := rc.Hijack(); err == nil {
		_ = conn.Close()
	}
}

// recordedAnswer holds the simulator's answer for CutResponses. Faults that
// hijack the connection reach the real one through Unwrap.
type recordedAnswer struct {
	w      http.ResponseWriter
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *recordedAnswer) Header() http.Header { return a.header }

func (a *recordedAnswer) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
}

func (a *recordedAnswer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return a.body.Write(b)
}

func (a *recordedAnswer) Unwrap() http.ResponseWriter { return a.w }
