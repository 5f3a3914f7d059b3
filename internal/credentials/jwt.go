package credentials

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// The JWTBearer grant's defaults (see snowv1.JWTBearerSpec).
const (
	DefaultAssertionLifetime = 5 * time.Minute
	DefaultClockTolerance    = 2 * time.Minute
)

// JWTSettings are conn's JWTBearer settings with the defaults filled in.
func JWTSettings(conn *snowv1.ServiceNowConnection) (alg string, lifetime, tolerance time.Duration, mode snowv1.SigningKeyMode) {
	alg, lifetime, tolerance, mode = servicenow.AlgorithmRS256, DefaultAssertionLifetime, DefaultClockTolerance, snowv1.SigningKeyManaged
	j := conn.Spec.JWTBearer
	if j == nil {
		return alg, lifetime, tolerance, mode
	}
	if j.Algorithm != "" {
		alg = string(j.Algorithm)
	}
	if j.AssertionLifetime != nil {
		lifetime = j.AssertionLifetime.Duration
	}
	if j.ClockTolerance != nil {
		tolerance = j.ClockTolerance.Duration
	}
	if j.SigningKey != "" {
		mode = j.SigningKey
	}
	return alg, lifetime, tolerance, mode
}

// assertion is how conn's assertions are made. With signingKey Provided the
// key comes from values; with Managed the reconciler adds its active key.
func assertion(conn *snowv1.ServiceNowConnection, values map[string]string) (*servicenow.JWTAssertion, error) {
	alg, lifetime, tolerance, mode := JWTSettings(conn)
	a := &servicenow.JWTAssertion{
		Algorithm: alg, Lifetime: lifetime, ClockTolerance: tolerance,
		Subject: values[snowv1.CredentialsKeyUsername], Audience: values[snowv1.CredentialsKeyClientID],
	}
	if j := conn.Spec.JWTBearer; j != nil {
		if j.Subject != "" {
			a.Subject = j.Subject
		}
		if j.Audience != "" {
			a.Audience = j.Audience
		}
	}
	if mode != snowv1.SigningKeyProvided {
		return a, nil
	}
	name := conn.Spec.CredentialsSecretRef.Name
	key, err := ParsePrivateKey([]byte(values[snowv1.CredentialsKeyPrivateKey]))
	if err != nil {
		return nil, &Error{Reason: snowv1.ReasonCredentialsInvalid,
			Message: fmt.Sprintf("key %q of credentials Secret %s: %v", snowv1.CredentialsKeyPrivateKey, name, err)}
	}
	if msg := servicenow.KeyFits(key, alg); msg != "" {
		return nil, &Error{Reason: snowv1.ReasonCredentialsInvalid,
			Message: fmt.Sprintf("key %q of credentials Secret %s cannot sign: %s; set spec.jwtBearer.algorithm to match it", snowv1.CredentialsKeyPrivateKey, name, msg)}
	}
	a.Key, a.KeyID = key, values[snowv1.CredentialsKeyKeyID]
	if a.KeyID == "" {
		a.KeyID = KeyID(key)
	}
	return a, nil
}

// ParsePrivateKey reads a PEM private key: PKCS#8 ("PRIVATE KEY"), PKCS#1
// ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"). Its errors never quote
// the key.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("not a PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("a PEM %q block is not a private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("the PEM %s block does not parse", block.Type)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the key cannot sign")
	}
	return signer, nil
}

// KeyID is a key's default kid: its RFC 7638 JWK thumbprint (SHA-256,
// base64url), the same for the same key wherever it is computed.
func KeyID(key crypto.Signer) string {
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}
