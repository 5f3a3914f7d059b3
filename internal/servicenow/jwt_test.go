package servicenow_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// jwtFixture is a fixture whose OAuth client verifies JWT assertions with
// the certificate of key under kid "k1", recording what is sent.
func jwtFixture(t *testing.T, key crypto.Signer, v simulator.JWTVerifier) (*fixture, *recordingTransport) {
	t.Helper()
	rec := &recordingTransport{}
	f := newFixture(t, simulator.Options{}, func(o *servicenow.Options) { o.Transport = rec })
	rec.next = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.sim.CertPool(), MinVersion: tls.VersionTLS12}}
	if v.Certificates == nil {
		v.Certificates = map[string]*x509.Certificate{"k1": certificate(t, key)}
	}
	f.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: canaryClientSecret, ApplicationUser: username, JWT: &v})
	return f, rec
}

func certificate(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	cert, err := simulator.VerifierCertificate(key, "test")
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (f *fixture) jwtRequest(key crypto.Signer, alg string) servicenow.TokenRequest {
	req := f.request(servicenow.GrantJWTBearer)
	req.Credentials.JWT = &servicenow.JWTAssertion{Key: key, KeyID: "k1", Algorithm: alg, Subject: username, Audience: clientID,
		Lifetime: 5 * time.Minute, ClockTolerance: 2 * time.Minute}
	return req
}

func TestJWTBearerSendsAFreshSignedAssertionPerRequest(t *testing.T) {
	for _, tc := range []struct {
		alg string
		key func() (crypto.Signer, error)
	}{
		{servicenow.AlgorithmRS256, func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }},
		{servicenow.AlgorithmES256, func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			g := NewWithT(t)
			key, err := tc.key()
			g.Expect(err).NotTo(HaveOccurred())
			f, rec := jwtFixture(t, key, simulator.JWTVerifier{})
			sent := time.Now()

			for range 2 {
				tok, err := f.client.Token(context.Background(), f.jwtRequest(key, tc.alg))
				g.Expect(err).NotTo(HaveOccurred(), "the instance verified the assertion")
				g.Expect(tok.RefreshToken).To(BeEmpty(), "ServiceNow gives no refresh token for JWT bearer")
			}

			g.Expect(rec.sent).To(HaveLen(2), "one request per token")
			var jtis []string
			for _, s := range rec.sent {
				g.Expect(s.form.Get("grant_type")).To(Equal("urn:ietf:params:oauth:grant-type:jwt-bearer"))
				g.Expect(s.form.Get("client_id")).To(Equal(clientID))
				g.Expect(s.form.Get("client_secret")).To(Equal(canaryClientSecret), "ServiceNow wants the client secret in the body too")
				g.Expect(s.header.Get("Authorization")).To(BeEmpty())

				parsed, err := jwt.ParseSigned(s.form.Get("assertion"), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tc.alg)})
				g.Expect(err).NotTo(HaveOccurred())
				h := parsed.Headers[0]
				g.Expect(h.KeyID).To(Equal("k1"))
				g.Expect(h.ExtraHeaders[jose.HeaderType]).To(Equal("JWT"))
				var c jwt.Claims
				g.Expect(parsed.Claims(key.Public(), &c)).To(Succeed(), "signed with the key")
				g.Expect(c.Issuer).To(Equal(clientID))
				g.Expect(c.Subject).To(Equal(username))
				g.Expect([]string(c.Audience)).To(Equal([]string{clientID}))
				g.Expect(c.IssuedAt.Time()).To(BeTemporally("~", sent.Add(-2*time.Minute), 5*time.Second), "iat is dated back by the clock tolerance")
				g.Expect(c.NotBefore.Time()).To(Equal(c.IssuedAt.Time()))
				g.Expect(c.Expiry.Time()).To(BeTemporally("~", sent.Add(5*time.Minute), 5*time.Second))
				g.Expect(c.ID).To(HaveLen(22), "a 128-bit jti")
				jtis = append(jtis, c.ID)
			}
			g.Expect(jtis[0]).NotTo(Equal(jtis[1]), "a new jti for every request")
		})
	}
}

func TestJWTBearerRejectionNamesTheLikelyCausesAndNoSecret(t *testing.T) {
	g := NewWithT(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g.Expect(err).NotTo(HaveOccurred())
	f, rec := jwtFixture(t, key, simulator.JWTVerifier{Audience: "https://elsewhere.example/oauth_token.do"})

	_, err = f.client.Token(context.Background(), f.jwtRequest(key, servicenow.AlgorithmES256))

	var se *servicenow.Error
	g.Expect(errors.As(err, &se)).To(BeTrue())
	g.Expect(se.Kind).To(Equal(servicenow.KindAuthenticationFailed))
	for _, cause := range []string{"kid", "aud", "clock skew", "jti", "sub"} {
		g.Expect(se.Error()).To(ContainSubstring(cause))
	}
	assertion := rec.sent[0].form.Get("assertion")
	g.Expect(assertion).NotTo(BeEmpty())
	g.Expect(se.Error()).NotTo(ContainSubstring(strings.Split(assertion, ".")[2]), "the assertion's signature never appears")
	g.Expect(se.Error()).NotTo(ContainSubstring(canaryClientSecret))
}

func TestJWTBearerRefusesAKeyThatDoesNotFitTheAlgorithmWithoutSending(t *testing.T) {
	g := NewWithT(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g.Expect(err).NotTo(HaveOccurred())
	f, rec := jwtFixture(t, key, simulator.JWTVerifier{})

	_, err = f.client.Token(context.Background(), f.jwtRequest(key, servicenow.AlgorithmRS256))

	var se *servicenow.Error
	g.Expect(errors.As(err, &se)).To(BeTrue())
	g.Expect(se.Kind).To(Equal(servicenow.KindInvalidRequest))
	g.Expect(se.Error()).To(ContainSubstring("ECDSA key, which signs ES256"))
	g.Expect(rec.sent).To(BeEmpty(), "nothing was sent")
}
