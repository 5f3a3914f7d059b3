package authserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is what the signed state value carries between the start link, the
// ServiceNow login page and the callback.
type State struct {
	// Namespace, Name and UID identify the connection; a connection deleted
	// and created again under the same name has another UID.
	Namespace string `json:"ns"`
	Name      string `json:"n"`
	UID       string `json:"u"`
	// CredentialsVersion is the credentials Secret's resourceVersion when
	// the link was made: a code obtained for one OAuth client must not be
	// exchanged with another's secret.
	CredentialsVersion string `json:"cv"`
	// Nonce makes each link unique and single-use, and seeds the PKCE
	// verifier.
	Nonce string `json:"nc"`
	// Expires bounds how long the link works (Unix seconds).
	Expires int64 `json:"exp"`
}

// Errors of Verify. Their text is shown to the person in the browser.
var (
	ErrMalformedState = errors.New("the link is malformed")
	ErrForgedState    = errors.New("the link was not issued by this snowauth (or its key was rotated)")
	ErrExpiredState   = errors.New("the link has expired")
)

// minKeySize is the HMAC-SHA256 key size: 32 random bytes.
const minKeySize = 32

// Signer signs and verifies states and derives PKCE verifiers, with one key.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer for key, which must hold at least 32 bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < minKeySize {
		return nil, fmt.Errorf("the authorization signing key must hold at least %d bytes, it holds %d", minKeySize, len(key))
	}
	return &Signer{key: append([]byte(nil), key...)}, nil
}

// NewKey returns a fresh random signing key.
func NewKey() []byte {
	k := make([]byte, minKeySize)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (Go 1.24+)
	return k
}

// NewNonce returns a random nonce.
func NewNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var b64 = base64.RawURLEncoding

// Sign returns base64url(payload) "." base64url(HMAC-SHA256(key, payload)).
func (s *Signer) Sign(st State) string {
	payload, _ := json.Marshal(st) // a struct of strings and an int cannot fail
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(s.mac(payload))
}

// Verify checks a state's signature (in constant time) and expiry and
// returns what it carries. now is the verifier's clock.
func (s *Signer) Verify(value string, now time.Time) (State, error) {
	encPayload, encMAC, ok := strings.Cut(value, ".")
	if !ok || encPayload == "" || encMAC == "" || len(value) > 2048 {
		return State{}, ErrMalformedState
	}
	payload, err := b64.DecodeString(encPayload)
	if err != nil {
		return State{}, ErrMalformedState
	}
	mac, err := b64.DecodeString(encMAC)
	if err != nil {
		return State{}, ErrMalformedState
	}
	if !hmac.Equal(mac, s.mac(payload)) {
		return State{}, ErrForgedState
	}
	var st State
	if err := json.Unmarshal(payload, &st); err != nil || st.Namespace == "" || st.Name == "" || st.UID == "" || st.Nonce == "" {
		// Signed by us but not a state we would write: treat as malformed.
		return State{}, ErrMalformedState
	}
	if !now.Before(time.Unix(st.Expires, 0)) {
		return State{}, ErrExpiredState
	}
	return st, nil
}

// CodeVerifier derives the PKCE code_verifier of a nonce, so nothing needs
// storing between the redirect and the callback: base64url of
// HMAC-SHA256(key, "pkce" + nonce), 43 characters.
func (s *Signer) CodeVerifier(nonce string) string {
	return b64.EncodeToString(s.mac([]byte("pkce" + nonce)))
}

func (s *Signer) mac(b []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(b)
	return m.Sum(nil)
}
