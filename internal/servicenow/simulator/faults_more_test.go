package simulator_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// door is a front door of an instance with a raw HTTP client that trusts
// the front door's CA and addresses it as localhost, and a fresh connection
// per request (so that each request shows what a new handshake meets).
type door struct {
	*simulator.FrontDoor
	in   *instance
	http *http.Client
}

func newDoor(t *testing.T) *door {
	t.Helper()
	in := newInstance(t, simulator.Options{})
	d, err := in.OpenFrontDoor()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(d.CACertPEM()) {
		t.Fatal("the front door's CA bundle holds no certificate")
	}
	return &door{FrontDoor: d, in: in, http: &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}}
}

// token sends a password grant through the front door and reads the whole
// answer: the status, or the error of sending or of reading.
func (d *door) token(t *testing.T) (int, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, d.LocalhostURL()+"/oauth_token.do",
		strings.NewReader(passwordGrant().Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return resp.StatusCode, err
	}
	return resp.StatusCode, nil
}

func TestFrontDoor(t *testing.T) {
	t.Run("serves the same instance: its clients, faults and counters", func(t *testing.T) {
		g := NewWithT(t)
		d := newDoor(t)
		g.Expect(d.token(t)).To(Equal(200))
		g.Expect(d.in.TokenRequests(clientID, "password")).To(Equal(1))
		g.Expect(d.Requests()).To(Equal(1))
		g.Expect(d.Handshakes()).To(Equal(1))

		d.in.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 502})
		g.Expect(d.token(t)).To(Equal(502))
		d.in.SetFault(simulator.Fault{Kind: simulator.FaultDropConnection})
		_, err := d.token(t)
		g.Expect(err).To(HaveOccurred(), "a fault that hijacks the connection works through the front door")
		g.Expect(d.in.TokenRequests(clientID, "password")).To(Equal(3))
	})

	t.Run("refuses connections while down, on the same port once up again", func(t *testing.T) {
		g := NewWithT(t)
		d := newDoor(t)
		d.Down()
		_, err := d.token(t)
		g.Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "got %v", err)
		d.Down() // twice is harmless
		g.Expect(d.Up()).To(Succeed())
		g.Expect(d.Up()).To(Succeed())
		g.Expect(d.token(t)).To(Equal(200))
		g.Expect(d.in.TokenRequests("", "")).To(Equal(1))
	})

	t.Run("cuts answers off mid-body after the instance handled the request", func(t *testing.T) {
		g := NewWithT(t)
		d := newDoor(t)
		d.CutResponses(20)
		status, err := d.token(t)
		g.Expect(status).To(Equal(200), "the status and headers arrive")
		g.Expect(err).To(MatchError(io.ErrUnexpectedEOF))
		g.Expect(d.in.TokenRequestLog()).To(HaveLen(1))
		g.Expect(d.in.TokenRequestLog()[0].Status).To(Equal(200))

		d.in.SetFault(simulator.Fault{Kind: simulator.FaultServerError, Status: 503})
		status, err = d.token(t)
		g.Expect(status).To(Equal(503))
		g.Expect(err).To(MatchError(io.ErrUnexpectedEOF), "error answers are cut too")

		d.in.ClearFault()
		d.CutResponses(0)
		g.Expect(d.token(t)).To(Equal(200))
	})

	t.Run("presents a certificate nobody trusts, or one for another host, until told otherwise", func(t *testing.T) {
		g := NewWithT(t)
		d := newDoor(t)
		g.Expect(d.UseCertificate(simulator.CertificateUnknownAuthority)).To(Succeed())
		_, err := d.token(t)
		var unknown x509.UnknownAuthorityError
		g.Expect(errors.As(err, &unknown)).To(BeTrue(), "got %v", err)

		g.Expect(d.UseCertificate(simulator.CertificateOtherHost)).To(Succeed())
		_, err = d.token(t)
		var hostname x509.HostnameError
		g.Expect(errors.As(err, &hostname)).To(BeTrue(), "got %v", err)
		g.Expect(hostname.Certificate.DNSNames).To(Equal([]string{simulator.OtherHost}))

		g.Expect(d.Handshakes()).To(Equal(2), "failed handshakes are counted")
		g.Expect(d.Requests()).To(BeZero(), "no request got through")
		g.Expect(d.in.TokenRequests("", "")).To(BeZero())

		g.Expect(d.UseCertificate(simulator.CertificateValid)).To(Succeed())
		g.Expect(d.token(t)).To(Equal(200))
		g.Expect(d.UseCertificate("Bogus")).NotTo(Succeed())
	})

	t.Run("closes the connections a client keeps alive when the certificate changes", func(t *testing.T) {
		g := NewWithT(t)
		d := newDoor(t)
		d.http.Transport.(*http.Transport).DisableKeepAlives = false
		g.Expect(d.token(t)).To(Equal(200))
		g.Expect(d.UseCertificate(simulator.CertificateUnknownAuthority)).To(Succeed())
		// The client notices the closed connection on its own, in a moment;
		// a request sent at that very moment may still meet it.
		g.Eventually(func() bool {
			_, err := d.token(t)
			var unknown x509.UnknownAuthorityError
			return errors.As(err, &unknown)
		}, 5*time.Second, 10*time.Millisecond).Should(BeTrue(), "the next handshake meets the new certificate")
	})

	t.Run("stays down once closed", func(t *testing.T) {
		g := NewWithT(t)
		d := newDoor(t)
		d.Close()
		g.Expect(d.Up()).NotTo(Succeed())
		_, err := d.token(t)
		g.Expect(errors.Is(err, syscall.ECONNREFUSED)).To(BeTrue(), "got %v", err)
	})
}
