package servicenow

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GrantJWTBearer posts a signed JWT as the grant (RFC 7523). ServiceNow
// verifies it with the key its JWT verifier map has for the header's kid (a
// certificate, or a JWKS URL it fetches and caches), and answers with an
// access token for the user sub names, and no refresh token.
const GrantJWTBearer Grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// The JWS algorithms snowauth signs with: what every ServiceNow release with
// JWT bearer verifies (ES256 since Zurich's Machine Identity Console).
const (
	AlgorithmRS256 = "RS256"
	AlgorithmES256 = "ES256"
)

// JWTAssertion says how the JWT bearer grant's assertion is made. Token signs a
// new one, with a fresh jti, for every request: ServiceNow accepts a jti once.
type JWTAssertion struct {
	// Key signs; KeyID is the header's kid, which the instance looks the
	// public key up by. Key is secret.
	Key   crypto.Signer
	KeyID string
	// Algorithm is AlgorithmRS256 or AlgorithmES256, and must fit Key.
	Algorithm string
	// Subject is sub: the value of the user field the instance maps it to.
	// Audience is aud; ServiceNow's configuration page asks for the client
	// ID (which is also iss).
	Subject, Audience string
	// Lifetime is how long the assertion is valid from now. ClockTolerance
	// dates iat and nbf that far back, for an instance whose clock is behind.
	Lifetime, ClockTolerance time.Duration
}

// String hides the key.
func (a *JWTAssertion) String() string {
	if a == nil {
		return "<nil>"
	}
	return fmt.Sprintf("JWTAssertion{%s, kid %q, sub %q, aud %q, key hidden}", a.Algorithm, a.KeyID, a.Subject, a.Audience)
}

// KeyFits says why key cannot sign with alg, or returns "".
func KeyFits(key crypto.Signer, alg string) string {
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		if alg != AlgorithmRS256 {
			return fmt.Sprintf("the key is an RSA key, which signs RS256, not %s", alg)
		}
		if k.N.BitLen() < 2048 {
			return fmt.Sprintf("the RSA key has %d bits; RS256 needs at least 2048", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if alg != AlgorithmES256 {
			return fmt.Sprintf("the key is an ECDSA key, which signs ES256, not %s", alg)
		}
		if k.Curve != elliptic.P256() {
			return "the ECDSA key is not on the P-256 curve, which ES256 needs"
		}
	default:
		return fmt.Sprintf("the key is a %T; RS256 needs an RSA key and ES256 an ECDSA P-256 key", k)
	}
	return ""
}

// GenerateKey makes a new key pair for alg: RSA 2048 for RS256, ECDSA P-256
// for ES256.
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgorithmES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case AlgorithmRS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("algorithm %q is not supported", alg)
	}
}

// sign makes the assertion for clientID at now: iss = clientID, a random
// jti, iat and nbf ClockTolerance back, exp Lifetime ahead.
func (a *JWTAssertion) sign(clientID string, now time.Time) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.SignatureAlgorithm(a.Algorithm),
		Key:       jose.JSONWebKey{Key: a.Key, KeyID: a.KeyID},
	}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("the signing key cannot sign %s", a.Algorithm)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	back := now.Add(-a.ClockTolerance)
	s, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:    clientID,
		Subject:   a.Subject,
		Audience:  jwt.Audience{a.Audience},
		IssuedAt:  jwt.NewNumericDate(back),
		NotBefore: jwt.NewNumericDate(back),
		Expiry:    jwt.NewNumericDate(now.Add(a.Lifetime)),
		ID:        base64.RawURLEncoding.EncodeToString(jti),
	}).Serialize()
	if err != nil {
		return "", fmt.Errorf("signing the assertion failed")
	}
	return s, nil
}

// jwtMissing names what the JWT bearer grant lacks.
func jwtMissing(c Credentials) string {
	if name := firstEmpty(c.ClientID, "client ID", c.ClientSecret, "client secret"); name != "" {
		return name
	}
	a := c.JWT
	switch {
	case a == nil || a.Key == nil:
		return "signing key"
	case a.KeyID == "":
		return "key ID"
	case a.Subject == "":
		return "subject"
	case a.Audience == "":
		return "audience"
	}
	return ""
}

// jwtInvalid explains an assertion that cannot be made as configured.
func jwtInvalid(c Credentials) string {
	if msg := KeyFits(c.JWT.Key, c.JWT.Algorithm); msg != "" {
		return msg
	}
	if c.JWT.Lifetime <= 0 || c.JWT.ClockTolerance < 0 {
		return "the assertion lifetime must be positive and the clock tolerance not negative"
	}
	return ""
}
