package plugin_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/plugin"
)

// Key ids as snowauth makes them: RFC 7638 thumbprints.
const (
	oldKeyID    = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	activeKeyID = "0sQ7H1ab9vJ3k2X_c4fUe8Yt6RmWnLp5ZdGhKo1iTqE"
	jwksURL     = "https://snowauth.example.com/jwks/%s/orders.json"
)

// jwtBearer makes a connection use the JWTBearer grant with mode's key.
func jwtBearer(mode snowv1.SigningKeyMode) func(*snowv1.ServiceNowConnection) {
	return func(c *snowv1.ServiceNowConnection) {
		c.Spec.GrantType = snowv1.GrantJWTBearer
		c.Spec.JWTBearer = &snowv1.JWTBearerSpec{SigningKey: mode}
	}
}

// selfSignedPEM is a certificate as snowauth makes one for a provided
// key: self-signed, PEM, naming the connection.
func selfSignedPEM(g *WithT, ns, name string) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g.Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "snowauth " + ns + "/" + name},
		NotBefore:    t0.Add(-time.Hour),
		NotAfter:     t0.Add(364 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	g.Expect(err).NotTo(HaveOccurred())
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// providedKeyStatus is a Ready provided-key connection's status, holding
// certificate.
func providedKeyStatus(certificate string) snowv1.ServiceNowConnectionStatus {
	st := readyStatus("orders-token")
	st.JWTBearer = &snowv1.JWTBearerStatus{
		ActiveKeyID: activeKeyID, Certificate: certificate, CertificateNotAfter: at(364 * 24 * time.Hour),
	}
	return st
}

// managedKeysStatus is a Ready managed-key connection's status a minute
// after a rotation: the old key stays published until its assertions
// have expired.
func managedKeysStatus(ns string) snowv1.ServiceNowConnectionStatus {
	st := readyStatus("orders-token")
	st.JWTBearer = &snowv1.JWTBearerStatus{
		JWKSURL:          fmt.Sprintf(jwksURL, ns),
		ActiveKeyID:      activeKeyID,
		NextRotationTime: at(30*24*time.Hour - 24*time.Hour - time.Minute),
		Keys: []snowv1.PublishedKey{
			{KeyID: oldKeyID, Algorithm: snowv1.JWTRS256, PublicKey: `{"kty":"RSA"}`, PublishedAt: *at(-31 * 24 * time.Hour),
				SignsFrom: at(-30 * 24 * time.Hour), RetiresAt: at(7 * time.Minute)},
			{KeyID: activeKeyID, Algorithm: snowv1.JWTRS256, PublicKey: `{"kty":"RSA"}`, PublishedAt: *at(-24*time.Hour - time.Minute),
				SignsFrom: at(-time.Minute)},
		},
	}
	return st
}

func TestJWTCertificatePrintsTheProvidedKeysCertificateExactlySoItCanBeRedirectedToAFile(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	cert := selfSignedPEM(g, ns, "orders")
	setStatus(g, createConnection(g, ns, "orders", jwtBearer(snowv1.SigningKeyProvided)), providedKeyStatus(cert))

	r := kubectlServicenow(kubeconfig(t, ns), t0, "jwt-certificate", "orders")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(Equal(cert), "the PEM alone, byte for byte")
	g.Expect(r.stderr).To(BeEmpty())
	block, rest := pem.Decode([]byte(r.stdout))
	g.Expect(rest).To(BeEmpty())
	parsed, err := x509.ParseCertificate(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed.Subject.CommonName).To(Equal("snowauth " + ns + "/orders"))
}

func TestJWTCertificateNeedsOnlyGetOnTheConnection(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	cert := selfSignedPEM(g, ns, "orders")
	setStatus(g, createConnection(g, ns, "orders", jwtBearer(snowv1.SigningKeyProvided)), providedKeyStatus(cert))
	allow(g, ns, "viewer", "get")

	r := kubectlServicenow(kubeconfig(t, ns), t0, "jwt-certificate", "orders", "--as", "viewer")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(Equal(cert))
}

func TestJWTCertificateSaysWhyThereIsNoCertificateToPrint(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders")
	setStatus(g, createConnection(g, ns, "managed", jwtBearer(snowv1.SigningKeyManaged)), managedKeysStatus(ns))
	// spec.jwtBearer left out: the keys are managed by default.
	createConnection(g, ns, "unpublished", func(c *snowv1.ServiceNowConnection) { c.Spec.GrantType = snowv1.GrantJWTBearer })
	createConnection(g, ns, "new", jwtBearer(snowv1.SigningKeyProvided))
	// Someone who may write status put something else there.
	setStatus(g, createConnection(g, ns, "tampered", jwtBearer(snowv1.SigningKeyProvided)),
		providedKeyStatus("\x1b]0;owned\a\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	kc := kubeconfig(t, ns)

	for _, tc := range []struct{ name, connection, message string }{
		{"a connection that does not exist", "missing",
			fmt.Sprintf(`ServiceNowConnection "missing" not found in namespace %q`, ns)},
		{"another grant", "orders",
			ns + "/orders uses the ClientCredentials grant: only JWTBearer connections with signingKey Provided have a certificate"},
		{"managed keys, and the JWKS URL to use instead", "managed",
			ns + "/managed uses managed signing keys (spec.jwtBearer.signingKey Managed), which have no certificate: " +
				"give the instance's JWT verifier map the JWKS URL " + fmt.Sprintf(jwksURL, ns)},
		{"managed keys not published yet", "unpublished",
			ns + "/unpublished uses managed signing keys (spec.jwtBearer.signingKey Managed), which have no certificate: " +
				"the instance's JWT verifier map takes the connection's JWKS URL, which snowauth has not published yet; " +
				"see kubectl servicenow status unpublished"},
		{"no certificate before the first token request", "new",
			ns + "/new has no certificate yet: snowauth makes it at the first token request; see kubectl servicenow status new"},
		{"a certificate snowauth would not make", "tampered",
			"status.jwtBearer.certificate of " + ns + "/tampered is not a certificate snowauth would make " +
				"(text besides one PEM CERTIFICATE block): not printed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := kubectlServicenow(kc, t0, "jwt-certificate", tc.connection)
			g.Expect(r.err).To(MatchError(tc.message))
			g.Expect(r.code).To(Equal(plugin.ExitFailure))
			g.Expect(r.stderr).To(Equal("Error: " + tc.message + "\n"))
			g.Expect(r.stdout).To(BeEmpty(), "nothing lands in the certificate file")
		})
	}
}

func TestStatusShowsTheJWKSURLActiveKeyNextRotationAndPublishedKeysOfManagedKeys(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	setStatus(g, createConnection(g, ns, "orders", jwtBearer(snowv1.SigningKeyManaged)), managedKeysStatus(ns))

	r := kubectlServicenow(kubeconfig(t, ns), t0, "status", "orders")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(HavePrefix(fmt.Sprintf(`Connection:     %[1]s/orders
State:          Ready (TokenValid)
Instance:       https://acme.service-now.com
Grant:          JWTBearer
Token Secret:   orders-token
Expires:        in 24m (2030-01-02T10:24:00Z)
Last refresh:   6m ago (2030-01-02T09:54:00Z)
Next refresh:   in 14m (2030-01-02T10:14:00Z)
Failures:       none since the last success
Signing key:    Managed: snowauth makes, publishes and rotates it
JWKS URL:       https://snowauth.example.com/jwks/%[1]s/orders.json
Active key:     %[2]s
Next rotation:  in 28d (2030-01-31T09:59:00Z)
Published keys:
  KEY ID                                       ALGORITHM  SIGNS FROM                      RETIRES AT
  %[3]s  RS256      30d ago (2029-12-03T10:00:00Z)  in 7m (2030-01-02T10:07:00Z)
  %[2]s  RS256      60s ago (2030-01-02T09:59:00Z)  <none>
Conditions:
`, ns, activeKeyID, oldKeyID)))
}

func TestStatusShowsManagedKeysThatAreNotPublishedYet(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders", func(c *snowv1.ServiceNowConnection) { c.Spec.GrantType = snowv1.GrantJWTBearer })

	r := kubectlServicenow(kubeconfig(t, ns), t0, "status", "orders")

	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(ContainSubstring(`Signing key:    Managed: snowauth makes, publishes and rotates it
JWKS URL:       <none>
Active key:     <none>
Next rotation:  <none>
Published keys:
  <none>
Conditions:
`))
}

func TestStatusShowsTheProvidedKeysCertificateExpiryAndHowToPrintIt(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	setStatus(g, createConnection(g, ns, "orders", jwtBearer(snowv1.SigningKeyProvided)),
		providedKeyStatus(selfSignedPEM(g, ns, "orders")))
	createConnection(g, ns, "new", jwtBearer(snowv1.SigningKeyProvided))
	expired := createConnection(g, ns, "expired", jwtBearer(snowv1.SigningKeyProvided))
	st := providedKeyStatus(selfSignedPEM(g, ns, "expired"))
	st.JWTBearer.CertificateNotAfter = at(-48 * time.Hour)
	setStatus(g, expired, st)
	kc := kubeconfig(t, ns)

	r := kubectlServicenow(kc, t0, "status", "orders")
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(ContainSubstring(`Failures:      none since the last success
Signing key:   Provided: private_key of Secret orders-credentials
Active key:    ` + activeKeyID + `
Certificate:   expires in 364d (2031-01-01T10:00:00Z); kubectl servicenow jwt-certificate orders prints it for the instance's JWT verifier map
Conditions:
`))
	g.Expect(r.stdout).NotTo(Or(ContainSubstring("BEGIN CERTIFICATE"), ContainSubstring("Published keys")))

	r = kubectlServicenow(kc, t0, "status", "new")
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(MatchRegexp(`Active key:\s+<none>\nCertificate:\s+<none>: snowauth makes it at the first token request\n`))

	r = kubectlServicenow(kc, t0, "status", "expired")
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(MatchRegexp(`Certificate:\s+expired 2d ago \(2029-12-31T10:00:00Z\); kubectl servicenow jwt-certificate expired prints it`))
}

func TestCompletionOffersConnectionNamesForJWTCertificate(t *testing.T) {
	g := NewWithT(t)
	ns := env.Namespace(t)
	createConnection(g, ns, "orders", jwtBearer(snowv1.SigningKeyProvided))
	createConnection(g, ns, "crm")
	kc := kubeconfig(t, ns)

	r := kubectlServicenow(kc, t0, "__complete", "jwt-certificate", "")
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(Equal("crm\norders\n:4\n"))

	// One name only: nothing more, and no file names.
	r = kubectlServicenow(kc, t0, "__complete", "jwt-certificate", "orders", "")
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.stdout).To(Equal(":4\n"))
}
