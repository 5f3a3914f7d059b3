package controllers_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// withJWT runs the JWTBearer grant as production does: the manager's keys
// are published by the authorization server, whose JWKS URL for the
// connection "catalog" the simulated instance's JWT configuration holds.
func withJWT(v simulator.JWTVerifier) harnessOption {
	return func(h *harness) {
		withAuthorization()(h)
		h.jwksTrust.AddCert(h.auth.Certificate())
		v.JWKSURL = h.links.JWKSURL(h.ns, "catalog")
		h.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser, JWT: &v})
	}
}

// withJWTVerifierMap is an instance whose JWT configuration verifies with
// certificates only (no JWKS URL), none registered yet.
func withJWTVerifierMap() harnessOption {
	return func(h *harness) {
		h.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser, JWT: &simulator.JWTVerifier{}})
	}
}

// jwtConnection creates the connection "catalog" with the JWTBearer grant
// for the test user (the username key names the subject).
func (h *harness) jwtConnection(extra map[string]string, spec *snowv1.JWTBearerSpec) {
	h.t.Helper()
	data := h.clientCredentials()
	data["username"] = username
	for k, v := range extra {
		data[k] = v
	}
	h.credentials("sn-jwt", data)
	h.connection("catalog", "sn-jwt", snowv1.GrantJWTBearer, func(c *snowv1.ServiceNowConnection) { c.Spec.JWTBearer = spec })
}

// jwtRequests are the simulator's records of JWT bearer requests.
func (h *harness) jwtRequests() []simulator.TokenRequestRecord {
	var out []simulator.TokenRequestRecord
	for _, r := range h.sim.TokenRequestLog() {
		if r.Grant == simulator.GrantJWTBearer {
			out = append(out, r)
		}
	}
	return out
}

// rejections lists why the simulator refused JWT bearer requests.
func (h *harness) rejections() []string {
	var out []string
	for _, r := range h.jwtRequests() {
		if r.Status != http.StatusOK {
			out = append(out, r.Rejection)
		}
	}
	return out
}

// poke requests a refresh and waits until it was handled with a new JWT
// bearer request.
func (h *harness) poke(value string) {
	h.t.Helper()
	before := len(h.jwtRequests())
	h.requestRefresh("catalog", value)
	h.g.Eventually(func() int { return len(h.jwtRequests()) }, 20*time.Second).Should(BeNumerically(">", before), "a token request for %s", value)
	h.g.Eventually(func() string { return h.get("catalog").Status.LastHandledRefreshRequest }, 20*time.Second).Should(Equal(value))
}

// jwtStatus is status.jwtBearer, never nil.
func (h *harness) jwtStatus() snowv1.JWTBearerStatus {
	if st := h.get("catalog").Status.JWTBearer; st != nil {
		return *st
	}
	return snowv1.JWTBearerStatus{}
}

func publishedIDs(st snowv1.JWTBearerStatus) []string {
	var ids []string
	for _, k := range st.Keys {
		ids = append(ids, k.KeyID)
	}
	return ids
}

// jwksDocument fetches the connection's JWKS document as the instance does.
func (h *harness) jwksDocument() (raw []byte, set jose.JSONWebKeySet) {
	h.t.Helper()
	resp, err := h.browser().Get(h.jwtStatus().JWKSURL)
	h.g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	raw, _ = io.ReadAll(resp.Body)
	h.g.Expect(resp.StatusCode).To(Equal(http.StatusOK), "the JWKS document: %s", raw)
	h.g.Expect(json.Unmarshal(raw, &set)).To(Succeed())
	return raw, set
}

func TestJWTBearerWithManagedKeysIsReadyThroughThePublishedJWKS(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withJWT(simulator.JWTVerifier{}))
	h.jwtConnection(nil, nil)

	h.g.Eventually(h.readyStatus("catalog"), 20*time.Second).Should(Equal("True/TokenValid"))
	h.g.Expect(h.accessToken("catalog-token")()).NotTo(BeEmpty(), "applications read the token from the token Secret")
	st := h.jwtStatus()
	h.g.Expect(st.JWKSURL).To(Equal(h.links.ExternalURL.String() + "/jwks/" + h.ns + "/catalog.json"))
	h.g.Expect(publishedIDs(st)).To(Equal([]string{st.ActiveKeyID}), "one key, published and signing")
	h.g.Expect(st.NextRotationTime.Time).To(BeTemporally("~", time.Now().Add(30*24*time.Hour), time.Minute), "rotated every 30 days by default")
	h.g.Expect(h.sim.JWKSFetches(st.JWKSURL)).To(BeNumerically(">=", 1), "the instance verified through the JWKS URL")
	h.g.Expect(h.rejections()).To(BeEmpty(), "the first assertion was signed only once its key was published")

	keys := h.tokenSecret("catalog-signing-keys")
	h.g.Expect(keys).NotTo(BeNil(), "the private key lives in an operator-owned Secret")
	h.g.Expect(metav1.IsControlledBy(keys, h.get("catalog"))).To(BeTrue(), "deleted with the connection")

	// The document holds public keys only, parsed as the instance parses it.
	raw, set := h.jwksDocument()
	h.g.Expect(set.Keys).To(HaveLen(1))
	h.g.Expect(set.Keys[0].IsPublic()).To(BeTrue())
	h.g.Expect(set.Keys[0].KeyID).To(Equal(st.ActiveKeyID))
	var members struct{ Keys []map[string]any }
	h.g.Expect(json.Unmarshal(raw, &members)).To(Succeed())
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		h.g.Expect(members.Keys[0]).NotTo(HaveKey(private), "no private member %q in the JWKS document", private)
	}

	// A refresh signs a new assertion: the instance accepts each jti once.
	first := h.accessToken("catalog-token")()
	h.poke("again")
	h.g.Expect(h.rejections()).To(BeEmpty(), "no jti was sent twice")
	h.g.Expect(h.accessToken("catalog-token")()).NotTo(BeEmpty())
	_ = first

	// The private key appears nowhere but its Secret.
	var stored []struct{ PrivateKey string }
	h.g.Expect(json.Unmarshal(keys.Data[snowv1.SigningKeysKey], &stored)).To(Succeed())
	canary := pemBody(stored[0].PrivateKey)
	status, _ := json.Marshal(h.get("catalog").Status)
	h.g.Expect(string(status)).NotTo(ContainSubstring(canary), "status")
	h.g.Expect(h.logs.String()).NotTo(ContainSubstring(canary), "logs")
	h.g.Expect(string(raw)).NotTo(ContainSubstring(canary), "the JWKS document")
	var events eventsv1.EventList
	h.g.Expect(env.Client.List(h.ctx, &events, client.InNamespace(h.ns))).To(Succeed())
	h.g.Expect(events.Items).NotTo(BeEmpty())
	for _, e := range events.Items {
		h.g.Expect(e.Note).NotTo(ContainSubstring(canary), "Event %s", e.Reason)
	}
	h.g.Expect(h.eventReasons()).To(ContainElement("SigningKeyCreated"))
}

// pemBody is the longest line of a PEM block: a piece of the key itself.
func pemBody(p string) string {
	longest := ""
	for _, l := range strings.Split(p, "\n") {
		if !strings.HasPrefix(l, "-----") && len(l) > len(longest) {
			longest = l
		}
	}
	return longest
}

// virtualClock is a clock for the manager, its ServiceNow client and the
// simulator together, moved forward by the test.
type virtualClock struct{ offset atomic.Int64 }

func (c *virtualClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func TestJWTBearerKeyRotationNeverMeetsA401(t *testing.T) {
	clock := &virtualClock{}
	// The instance caches the JWKS document for 5 minutes; the new key is
	// published 10 minutes before it signs.
	h := newHarness(t, 30*time.Minute, withClock(clock.now), withClientClock(clock.now),
		withJWT(simulator.JWTVerifier{JWKSCacheLifespan: 5 * time.Minute}))
	advance := func(d time.Duration) { clock.offset.Add(int64(d)); h.sim.Advance(d) }
	h.jwtConnection(nil, &snowv1.JWTBearerSpec{
		AssertionLifetime: &metav1.Duration{Duration: time.Minute},
		ClockTolerance:    &metav1.Duration{Duration: 30 * time.Second},
		Rotation: &snowv1.KeyRotationSpec{
			Every: &metav1.Duration{Duration: time.Hour}, PublishAhead: &metav1.Duration{Duration: 10 * time.Minute},
		},
	})
	h.g.Eventually(h.readyStatus("catalog"), 20*time.Second).Should(Equal("True/TokenValid"))
	old := h.jwtStatus().ActiveKeyID

	advance(61 * time.Minute)
	h.poke("rotation due")
	h.g.Eventually(func() []string { return publishedIDs(h.jwtStatus()) }, 10*time.Second).Should(HaveLen(2), "a new key is published")
	st := h.jwtStatus()
	h.g.Expect(st.ActiveKeyID).To(Equal(old), "the old key signs while the new one is only published")
	next := st.Keys[1].KeyID

	advance(5 * time.Minute)
	h.poke("while the new key is published")
	h.g.Expect(h.jwtStatus().ActiveKeyID).To(Equal(old))

	advance(6 * time.Minute) // past publishAhead: the new key signs
	h.poke("after the switch")
	h.g.Expect(h.jwtStatus().ActiveKeyID).To(Equal(next))
	h.g.Expect(publishedIDs(h.jwtStatus())).To(ConsistOf(old, next), "the old key stays published while its assertions may be valid")
	h.g.Expect(h.eventReasons()).To(ContainElement("SigningKeyRotated"))

	advance(3 * time.Minute) // past the old key's last assertion + lifetime + tolerance
	h.poke("after the old key's assertions expired")
	h.g.Eventually(func() []string { return publishedIDs(h.jwtStatus()) }, 10*time.Second).Should(Equal([]string{next}), "the old key is retired")
	_, set := h.jwksDocument()
	h.g.Expect(set.Keys).To(HaveLen(1))

	h.g.Expect(h.rejections()).To(BeEmpty(), "no request was refused at any point of the rotation")
	h.g.Expect(len(h.jwtRequests())).To(BeNumerically(">=", 5))
	h.g.Expect(h.sim.JWKSFetches(st.JWKSURL)).To(BeNumerically(">=", 3), "the instance's cache expired and it fetched the document again")
}

func TestJWTBearerAcceptsAManagerClockAMinuteAhead(t *testing.T) {
	ahead := func() time.Time { return time.Now().Add(time.Minute) }
	// The Machine Identity Console's clock skew: 0 s.
	h := newHarness(t, 30*time.Minute, withClock(ahead), withClientClock(ahead), withJWT(simulator.JWTVerifier{ClockSkew: 0}))
	h.jwtConnection(nil, nil)
	h.g.Eventually(h.readyStatus("catalog"), 20*time.Second).Should(Equal("True/TokenValid"), "iat and nbf are dated 2 minutes back by default")
	h.g.Expect(h.rejections()).To(BeEmpty())
}

func TestJWTBearerWithoutClockToleranceIsRefusedWhenTheManagerIsAhead(t *testing.T) {
	ahead := func() time.Time { return time.Now().Add(time.Minute) }
	h := newHarness(t, 30*time.Minute, withClock(ahead), withClientClock(ahead), withJWT(simulator.JWTVerifier{ClockSkew: 0}))
	h.jwtConnection(nil, &snowv1.JWTBearerSpec{ClockTolerance: &metav1.Duration{Duration: 0}})
	h.g.Eventually(h.conditionReason("catalog", snowv1.ConditionRefreshFailed), 20*time.Second).Should(Equal("AuthenticationFailed"))
	h.g.Expect(h.rejections()).To(ContainElement(Or(Equal("iat in the future"), Equal("not yet valid"))))
	h.g.Expect(h.condition("catalog", snowv1.ConditionRefreshFailed).Message).To(ContainSubstring("clocks differ"), "the message names the likely cause")
}

func TestJWTBearerWithTheWrongAudienceIsAuthenticationFailedNamingTheCauses(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withJWT(simulator.JWTVerifier{}))
	h.jwtConnection(nil, &snowv1.JWTBearerSpec{Audience: "https://elsewhere.example/oauth_token.do"})
	h.g.Eventually(h.conditionReason("catalog", snowv1.ConditionRefreshFailed), 20*time.Second).Should(Equal("AuthenticationFailed"))
	h.g.Expect(h.rejections()).To(ContainElement("aud"))
	msg := h.condition("catalog", snowv1.ConditionRefreshFailed).Message
	for _, cause := range []string{"aud", "kid", "clock skew", "jti", "sub"} {
		h.g.Expect(msg).To(ContainSubstring(cause), "the message names %s as a likely cause", cause)
	}
}

func TestJWTBearerWithAProvidedKeyWorksOnceItsCertificateIsInTheVerifierMap(t *testing.T) {
	// No authorization server: a provided key needs none.
	h := newHarness(t, 30*time.Minute, withJWTVerifierMap())
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.g.Expect(err).NotTo(HaveOccurred())
	der, err := x509.MarshalPKCS8PrivateKey(key)
	h.g.Expect(err).NotTo(HaveOccurred())
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	h.jwtConnection(map[string]string{"private_key": keyPEM, "key_id": "provided-1"},
		&snowv1.JWTBearerSpec{SigningKey: snowv1.SigningKeyProvided, Algorithm: snowv1.JWTES256})

	// The instance does not know the key yet: the certificate to give it
	// is in status.
	h.g.Eventually(h.conditionReason("catalog", snowv1.ConditionRefreshFailed), 20*time.Second).Should(Equal("AuthenticationFailed"))
	h.g.Expect(h.rejections()).To(ContainElement("unknown kid"))
	st := h.jwtStatus()
	h.g.Expect(st.ActiveKeyID).To(Equal("provided-1"))
	h.g.Expect(st.JWKSURL).To(BeEmpty(), "nothing is published for a provided key")
	block, _ := pem.Decode([]byte(st.Certificate))
	h.g.Expect(block).NotTo(BeNil(), "status.jwtBearer.certificate is PEM")
	cert, err := x509.ParseCertificate(block.Bytes)
	h.g.Expect(err).NotTo(HaveOccurred())
	h.g.Expect(key.PublicKey.Equal(cert.PublicKey)).To(BeTrue(), "the certificate is for the provided key")
	h.g.Expect(st.CertificateNotAfter.Time).To(BeTemporally("~", cert.NotAfter, time.Second))
	h.g.Expect(h.eventReasons()).To(ContainElement("CertificateCreated"))

	// An administrator adds it to the JWT verifier map.
	h.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser,
		JWT: &simulator.JWTVerifier{Certificates: map[string]*x509.Certificate{"provided-1": cert}}})
	h.requestRefresh("catalog", "certificate uploaded")
	h.g.Eventually(h.readyStatus("catalog"), 20*time.Second).Should(Equal("True/TokenValid"))
	h.g.Expect(h.jwtStatus().Certificate).To(Equal(st.Certificate), "the same certificate: it is made once per key")

	canary := pemBody(keyPEM)
	status, _ := json.Marshal(h.get("catalog").Status)
	h.g.Expect(string(status)).NotTo(ContainSubstring(canary), "status")
	h.g.Expect(h.logs.String()).NotTo(ContainSubstring(canary), "logs")
	for _, n := range h.warningNotes() {
		h.g.Expect(n).NotTo(ContainSubstring(canary), "Events")
	}
}

func TestJWTBearerWithAProvidedKeyOfTheWrongTypeSaysWhichAlgorithmFits(t *testing.T) {
	h := newHarness(t, 30*time.Minute, withJWTVerifierMap())
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.g.Expect(err).NotTo(HaveOccurred())
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	h.jwtConnection(map[string]string{"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))},
		&snowv1.JWTBearerSpec{SigningKey: snowv1.SigningKeyProvided}) // RS256 by default
	h.g.Eventually(h.conditionReason("catalog", snowv1.ConditionStalled), 20*time.Second).Should(Equal(snowv1.ReasonCredentialsInvalid))
	h.g.Expect(h.condition("catalog", snowv1.ConditionStalled).Message).To(
		And(ContainSubstring("private_key"), ContainSubstring("ES256"), ContainSubstring("spec.jwtBearer.algorithm")))
	h.g.Expect(h.jwtRequests()).To(BeEmpty(), "nothing was sent")
}

func TestJWTBearerWithManagedKeysNeedsTheAuthorizationServer(t *testing.T) {
	h := newHarness(t, 30*time.Minute)
	h.jwtConnection(nil, nil)
	h.g.Eventually(h.conditionReason("catalog", snowv1.ConditionStalled), 20*time.Second).Should(Equal(snowv1.ReasonAuthorizationServerDisabled))
	h.g.Expect(h.condition("catalog", snowv1.ConditionStalled).Message).To(ContainSubstring("signingKey to Provided"))
}

func TestJWTBearerRenewsAProvidedKeysCertificateAMonthAheadAndSaysSo(t *testing.T) {
	clock := &virtualClock{}
	h := newHarness(t, 30*time.Minute, withClock(clock.now), withClientClock(clock.now), withJWTVerifierMap())
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h.g.Expect(err).NotTo(HaveOccurred())
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	h.jwtConnection(map[string]string{"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "key_id": "provided-1"},
		&snowv1.JWTBearerSpec{SigningKey: snowv1.SigningKeyProvided, Algorithm: snowv1.JWTES256})
	h.g.Eventually(func() string { return h.jwtStatus().Certificate }, 20*time.Second).ShouldNot(BeEmpty())
	first := h.jwtStatus()
	block, _ := pem.Decode([]byte(first.Certificate))
	cert, err := x509.ParseCertificate(block.Bytes)
	h.g.Expect(err).NotTo(HaveOccurred())
	h.sim.AddClient(simulator.OAuthClient{ID: clientID, Secret: clientSecret, ApplicationUser: appUser,
		JWT: &simulator.JWTVerifier{Certificates: map[string]*x509.Certificate{"provided-1": cert}}})
	h.poke("uploaded")
	h.g.Eventually(h.readyStatus("catalog"), 20*time.Second).Should(Equal("True/TokenValid"))

	clock.offset.Add(int64(340 * 24 * time.Hour)) // 25 days before the certificate ends
	h.sim.Advance(340 * 24 * time.Hour)
	h.poke("a month ahead")
	h.g.Eventually(func() string { return h.jwtStatus().Certificate }, 20*time.Second).ShouldNot(Equal(first.Certificate), "a new certificate for the same key")
	renewed := h.jwtStatus()
	h.g.Expect(renewed.CertificateNotAfter.After(first.CertificateNotAfter.Time)).To(BeTrue())
	h.g.Expect(h.eventReasons()).To(ContainElement("CertificateRenewed"))
	h.g.Expect(h.warningNotes()).To(ContainElement(And(ContainSubstring(first.CertificateNotAfter.UTC().Format(time.RFC3339)),
		ContainSubstring("kubectl servicenow jwt-certificate catalog"))), "the Warning says until when the old one works and how to get the new one")
	h.g.Expect(h.readyStatus("catalog")()).To(Equal("True/TokenValid"), "the key is the same: tokens keep coming")
	h.g.Expect(h.condition("catalog", snowv1.ConditionCredentialExpiring)).To(BeNil(), "25 days before the old certificate ends")

	// Within 3 weeks of the old certificate's end, which the instance may
	// still hold: CredentialExpiring, until it has passed.
	for _, d := range []time.Duration{5 * 24 * time.Hour, 21 * 24 * time.Hour} {
		clock.offset.Add(int64(d))
		h.sim.Advance(d)
		h.poke(d.String() + " later")
		if d < 21*24*time.Hour {
			h.g.Eventually(h.conditionReason("catalog", snowv1.ConditionCredentialExpiring), 20*time.Second).Should(Equal("CertificateExpiresSoon"))
			h.g.Expect(h.condition("catalog", snowv1.ConditionCredentialExpiring).Message).To(ContainSubstring("kubectl servicenow jwt-certificate catalog"))
		}
	}
	h.g.Eventually(func() *metav1.Condition { return h.condition("catalog", snowv1.ConditionCredentialExpiring) }, 20*time.Second).Should(BeNil(),
		"the old certificate has ended: the horizon is the new one's, a year on")
}
