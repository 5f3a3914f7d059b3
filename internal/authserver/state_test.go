package authserver

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

var (
	testKey = []byte("0123456789abcdef0123456789abcdef")
	t0      = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
)

func testState() State {
	return State{Namespace: "apps", Name: "catalog", UID: "uid-1", CredentialsVersion: "42", Nonce: "n0nce", Expires: t0.Add(30 * time.Minute).Unix()}
}

func TestSignedStateVerifiesAndCarriesTheConnection(t *testing.T) {
	g := NewWithT(t)
	s, err := NewSigner(testKey)
	g.Expect(err).NotTo(HaveOccurred())
	got, err := s.Verify(s.Sign(testState()), t0)
	g.Expect(err).NotTo(HaveOccurred())
	want := testState()
	want.KeyID = KeyID(testKey)
	g.Expect(got).To(Equal(want))
}

// A rotated key keeps verifying the links it signed while it is listed as
// previous, and no longer once it is dropped; new links are signed with
// the new key.
func TestLinksSignedBeforeAKeyRotationWorkUntilTheOldKeyIsDropped(t *testing.T) {
	g := NewWithT(t)
	newKey := []byte("a new key of at least thirty-two bytes")
	before, _ := NewSigner(testKey)
	during, _ := NewSigner(newKey, testKey)
	after, _ := NewSigner(newKey)
	old := before.Sign(testState())

	_, err := during.Verify(old, t0)
	g.Expect(err).NotTo(HaveOccurred(), "during the overlap")
	fresh, _ := during.Verify(during.Sign(testState()), t0)
	g.Expect(fresh.KeyID).To(Equal(KeyID(newKey)), "new links use the new key")
	st, _ := during.Verify(old, t0)
	g.Expect(during.CodeVerifier(st)).To(Equal(before.CodeVerifier(st)), "the PKCE verifier of an old link is the old key's")
	_, err = after.Verify(old, t0)
	g.Expect(err).To(MatchError(ErrForgedState), "once the old key is dropped")
	g.Expect(KeyID(testKey)).To(HaveLen(8))
	g.Expect(old).NotTo(ContainSubstring(string(testKey)))
}

func TestVerifyRejectsBadStates(t *testing.T) {
	s, _ := NewSigner(testKey)
	other, _ := NewSigner([]byte("another key of at least 32 bytes!!"))
	good := s.Sign(testState())
	payload, mac, _ := strings.Cut(good, ".")
	tampered := testState()
	tampered.Name = "payroll"
	forgedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"ns":"apps","n":"payroll","u":"uid-1","nc":"n","exp":9999999999}`))

	cases := []struct {
		name  string
		value string
		now   time.Time
		want  error
	}{
		{"rejects a state signed with another key", other.Sign(testState()), t0, ErrForgedState},
		{"rejects a payload changed after signing", forgedPayload + "." + mac, t0, ErrForgedState},
		{"rejects a state for another connection under this state's signature", strings.SplitN(s.Sign(tampered), ".", 2)[0] + "." + mac, t0, ErrForgedState},
		{"rejects a state at its expiry", good, t0.Add(30 * time.Minute), ErrExpiredState},
		{"rejects a state after its expiry", good, t0.Add(time.Hour), ErrExpiredState},
		{"rejects an empty state", "", t0, ErrMalformedState},
		{"rejects a state without a signature", payload, t0, ErrMalformedState},
		{"rejects a state without a payload", "." + mac, t0, ErrMalformedState},
		{"rejects a payload that is not base64url", "!!!." + mac, t0, ErrMalformedState},
		{"rejects a signature that is not base64url", payload + ".***", t0, ErrMalformedState},
		{"rejects an absurdly long state", strings.Repeat("a", 3000) + "." + mac, t0, ErrMalformedState},
		{"rejects a signed payload that is not a state", s.Sign(State{}), t0, ErrMalformedState},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Verify(tc.value, tc.now)
			NewWithT(t).Expect(err).To(MatchError(tc.want))
		})
	}
}

func TestSignerNeedsAKeyOfAtLeast32Bytes(t *testing.T) {
	g := NewWithT(t)
	_, err := NewSigner([]byte("short"))
	g.Expect(err).To(MatchError(ContainSubstring("at least 32 bytes")))
	g.Expect(NewKey()).To(HaveLen(32))
	g.Expect(NewKey()).NotTo(Equal(NewKey()))
}

func TestCodeVerifierIsDerivedFromTheNonceAndMeetsPKCE(t *testing.T) {
	g := NewWithT(t)
	s, _ := NewSigner(testKey)
	st, _ := s.Verify(s.Sign(testState()), t0)
	v := s.CodeVerifier(st)
	g.Expect(v).To(Equal(s.CodeVerifier(st)), "the exchange derives the same verifier as the start link")
	otherNonce := st
	otherNonce.Nonce = "other"
	g.Expect(v).NotTo(Equal(s.CodeVerifier(otherNonce)))
	g.Expect(s.BrowserBinding(st)).NotTo(Equal(v), "the browser binding is another value")
	// RFC 7636: 43 to 128 characters of [A-Za-z0-9-._~].
	g.Expect(len(v)).To(BeNumerically(">=", 43))
	g.Expect(v).To(MatchRegexp(`^[A-Za-z0-9._~-]{43,128}$`))
	other, _ := NewSigner([]byte("another key of at least 32 bytes!!"))
	g.Expect(other.CodeVerifier(st)).NotTo(Equal(v), "the verifier cannot be computed without the key")
	g.Expect(NewNonce()).NotTo(Equal(NewNonce()))
}

// FuzzVerifyState: no input makes Verify panic, and whatever it accepts is a
// complete, unexpired state that signs back to the same value.
func FuzzVerifyState(f *testing.F) {
	s, _ := NewSigner(testKey)
	f.Add(s.Sign(testState()))
	f.Add("")
	f.Add(".")
	f.Add("a.b")
	f.Add("e30.AAAA")
	f.Fuzz(func(t *testing.T, value string) {
		st, err := s.Verify(value, t0)
		if err != nil {
			return
		}
		if st.Namespace == "" || st.Name == "" || st.UID == "" || st.Nonce == "" || !t0.Before(time.Unix(st.Expires, 0)) {
			t.Fatalf("accepted an incomplete or expired state %+v from %q", st, value)
		}
	})
}
