package authserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is what the signed state value carries between the start link, the
// ServiceNow login page and the callback. It holds nothing secret: the
// person's browser and ServiceNow see it. Everything the authorization
// server needs is in it, so that server reads no credentials.
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
	// Instance is the instance's base URL and ClientID the OAuth client's
	// ID, both public: the browser is sent to Instance's login page for
	// ClientID.
	Instance string `json:"i,omitempty"`
	ClientID string `json:"c,omitempty"`
	// Nonce makes each link unique, names it (LinkID) and seeds the PKCE
	// verifier and the browser binding.
	Nonce string `json:"nc"`
	// Expires bounds how long the link works (Unix seconds).
	Expires int64 `json:"exp"`
	// KeyID names the key that signed it (set by Sign).
	KeyID string `json:"k,omitempty"`
}

// LinkID names the link of a nonce in status and in the hand-over Secret:
// a digest, from which neither the nonce nor a link can be made.
func LinkID(nonce string) string {
	sum := sha256.Sum256([]byte("snowauth-link:" + nonce))
	return hex.EncodeToString(sum[:12])
}

// Errors of Verify. Their text is shown to the person in the browser.
var (
	ErrMalformedState = errors.New("the link is malformed")
	ErrForgedState    = errors.New("the link was not issued by this snowauth (or its key was rotated)")
	ErrExpiredState   = errors.New("the link has expired")
)

// minKeySize is the HMAC-SHA256 key size: 32 random bytes.
const minKeySize = 32

// Signer signs states with its first key and verifies them with any of its
// keys, chosen by key id: a rotated key keeps verifying the links it signed
// while it is listed (the overlap), and no longer once it is dropped.
type Signer struct {
	keys []signingKey
}

type signingKey struct {
	id  string
	key []byte
}

// NewSigner returns a Signer that signs with keys[0] and verifies with all
// of them; each must hold at least 32 bytes.
func NewSigner(keys ...[]byte) (*Signer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no authorization signing key")
	}
	s := &Signer{}
	for _, k := range keys {
		if len(k) < minKeySize {
			return nil, fmt.Errorf("the authorization signing key must hold at least %d bytes, it holds %d", minKeySize, len(k))
		}
		s.keys = append(s.keys, signingKey{id: KeyID(k), key: append([]byte(nil), k...)})
	}
	return s, nil
}

// KeyID names a key without revealing it: the first 8 hex digits of its
// SHA-256.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// SigningKeyID is the id of the key Sign uses.
func (s *Signer) SigningKeyID() string { return s.keys[0].id }

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

// Sign returns base64url(payload) "." base64url(HMAC-SHA256(key, payload)),
// with the signing key's id in the payload.
func (s *Signer) Sign(st State) string {
	st.KeyID = s.keys[0].id
	payload, _ := json.Marshal(st) // a struct of strings and an int cannot fail
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(mac(s.keys[0].key, payload))
}

// Verify checks a state's signature (in constant time, with the key its id
// names) and expiry and returns what it carries. now is the verifier's
// clock.
func (s *Signer) Verify(value string, now time.Time) (State, error) {
	encPayload, encMAC, ok := strings.Cut(value, ".")
	if !ok || encPayload == "" || encMAC == "" || len(value) > 2048 {
		return State{}, ErrMalformedState
	}
	payload, err := b64.DecodeString(encPayload)
	if err != nil {
		return State{}, ErrMalformedState
	}
	sig, err := b64.DecodeString(encMAC)
	if err != nil {
		return State{}, ErrMalformedState
	}
	// The key id is read before the signature is checked, only to choose
	// the key; nothing else of the payload is trusted before.
	var kid struct {
		KeyID string `json:"k"`
	}
	if json.Unmarshal(payload, &kid) != nil {
		return State{}, ErrForgedState
	}
	key := s.key(kid.KeyID)
	if key == nil || !hmac.Equal(sig, mac(key, payload)) {
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

// CodeVerifier derives the PKCE code_verifier of a verified state, so
// nothing needs storing between the redirect and the callback: base64url
// of HMAC-SHA256(key, "pkce" + nonce), 43 characters, with the key that
// signed the state.
func (s *Signer) CodeVerifier(st State) string {
	return b64.EncodeToString(mac(s.keyOr(st.KeyID), []byte("pkce"+st.Nonce)))
}

// BrowserBinding is the value of the cookie that binds a link's flow to the
// browser that started it: only the authorization server can compute it,
// and only that browser holds it.
func (s *Signer) BrowserBinding(st State) string {
	return b64.EncodeToString(mac(s.keyOr(st.KeyID), []byte("browser"+st.Nonce)))
}

func (s *Signer) key(id string) []byte {
	for _, k := range s.keys {
		if k.id == id {
			return k.key
		}
	}
	return nil
}

// keyOr is the key named id, or the signing key (for a state Verify has
// not accepted, whose derived values then match nothing).
func (s *Signer) keyOr(id string) []byte {
	if k := s.key(id); k != nil {
		return k
	}
	return s.keys[0].key
}

func mac(key, b []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(nil)
}
