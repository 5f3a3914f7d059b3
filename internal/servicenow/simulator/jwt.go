package simulator

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"math/big"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// GrantJWTBearer is the grant_type of the JWT bearer grant (RFC 7523): the
// client presents a signed assertion naming a user in the assertion field.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// DefaultJWKSCacheLifespan is how long a fetched JWKS document is used when
// JWTVerifier.JWKSCacheLifespan is zero. The JWKS URL and its cache lifespan
// came with Zurich; the ServiceNow documentation we have does not state the
// field's default. An hour is what JWKS consumers commonly use.
const DefaultJWKSCacheLifespan = time.Hour

// defaultJWKSTimeout bounds a JWKS fetch when Options.JWKSClient is nil.
const defaultJWKSTimeout = 10 * time.Second

// maxJWKSBytes bounds a JWKS document: a key set is a few kilobytes, and the
// whole document is read into memory.
const maxJWKSBytes = 1 << 20

// maxJTIs bounds the jtis remembered per client. Remembered jtis are
// forgotten once their assertion has expired (exp + clock skew); past the
// bound, the ones closest to that point go first, so only a client sending
// this many assertions within their lifetime could reuse one.
const maxJTIs = 10000

// jwtAlgorithms are the JWS algorithms the simulator verifies: those snowauth
// signs with. ServiceNow also lists RS/ES 384 and 512 and HS*, which snowauth
// does not use; an assertion with any other alg is rejected unread.
var jwtAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// JWTVerifier is an OAuth client's JWT bearer configuration: the Machine
// Identity Console's "JWT bearer grant" (Zurich and later) or the Application
// Registry's "OAuth JWT API endpoint for external clients" (earlier). Its
// User field is user_name: the assertion's sub names the user the token
// acts as.
type JWTVerifier struct {
	// Certificates is the JWT verifier map: kid -> X.509 certificate, whose
	// public key verifies assertions carrying that kid. It is consulted
	// before the JWKS.
	Certificates map[string]*x509.Certificate
	// JWKSURL, if set, is fetched (GET, a JWKS JSON document) for a kid not
	// in Certificates, and the document is cached for JWKSCacheLifespan of
	// the simulator clock (default DefaultJWKSCacheLifespan; the ServiceNow
	// documentation we have does not state ServiceNow's default). A kid the
	// cached document lacks is rejected without fetching again until the
	// lifespan has passed: keys must be published ahead of their use. A
	// failed fetch, or a document holding any private or symmetric key, is
	// a rejection too, and is fetched again at the next request.
	JWKSURL           string
	JWKSCacheLifespan time.Duration
	// ClockSkew is tolerated on exp, nbf and iat. The Machine Identity
	// Console's default is 0 s (the old Application Registry form's, 300 s).
	ClockSkew time.Duration
	// Audience is what the aud claim must be (or contain); default the
	// client ID, as the configuration page says.
	Audience string
	// AllowJTIReuse turns JTI verification off. ServiceNow has it on by
	// default: each jti is accepted once, so every exchange needs a new
	// assertion.
	AllowJTIReuse bool
}

// clone copies v so that a caller changing its verifier map after AddClient
// does not race with requests reading it.
func (v *JWTVerifier) clone() *JWTVerifier {
	if v == nil {
		return nil
	}
	c := *v
	c.Certificates = maps.Clone(v.Certificates)
	return &c
}

func (v *JWTVerifier) audience(clientID string) string {
	if v.Audience != "" {
		return v.Audience
	}
	return clientID
}

// jwksEntry is a fetched JWKS document, used until expiry.
type jwksEntry struct {
	keys   jose.JSONWebKeySet
	expiry time.Time
}

// Rejection reasons recorded in TokenRequestRecord.Rejection. They name the
// check that failed and never carry the assertion or a secret.
const (
	rejectClient         = "client" // unknown or inactive client, wrong secret
	rejectGrant          = "grant not allowed"
	rejectMalformed      = "malformed assertion"
	rejectAlg            = "alg"
	rejectUnknownKID     = "unknown kid"
	rejectBadSignature   = "bad signature"
	rejectIss            = "iss"
	rejectAud            = "aud"
	rejectNoExp          = "no exp"
	rejectExpired        = "expired"
	rejectNotYetValid    = "not yet valid"
	rejectIatInFuture    = "iat in the future"
	rejectNoJTI          = "no jti"
	rejectJTIReused      = "jti reused"
	rejectUnknownUser    = "unknown user"
	rejectJWKSFetch      = "jwks fetch failed"
	rejectJWKSMalformed  = "jwks malformed"
	rejectJWKSPrivateKey = "jwks has private keys"
)

// serveJWTBearer is the jwt-bearer branch of POST /oauth_token.do. Unlike
// the other grants it does not hold mu for the whole request: verifying the
// assertion may fetch the client's JWKS over HTTP, and whatever serves the
// JWKS may call the simulator back. It takes mu to read the client, to use
// the JWKS cache, and at the end to check the jti and the user and issue the
// token. Like the password grant, it uses the client+user's access token
// (extended while valid); unlike it, it returns no refresh token.
func (s *Simulator) serveJWTBearer(w http.ResponseWriter, r *http.Request) {
	form := r.PostForm
	deny := func(reason string) {
		s.updateRecord(r, func(rec *TokenRequestRecord) { rec.Rejection = reason })
		writeDenied(w)
	}

	s.mu.Lock()
	now := s.now()
	c, ok := s.clients[form.Get("client_id")]
	s.mu.Unlock()
	// AddClient stores a copy of the verifier that nothing changes
	// afterwards, so c.JWT can be read without mu.
	if !ok || c.Inactive || !equal(c.Secret, form.Get("client_secret")) {
		deny(rejectClient)
		return
	}
	if !c.accepts(GrantJWTBearer) {
		deny(rejectGrant)
		return
	}
	claims, reason := s.verifyAssertion(r.Context(), c, form.Get("assertion"), now)
	if reason != "" {
		deny(reason)
		return
	}
	// The signature is good, so sub is who the client says it acts as.
	s.updateRecord(r, func(rec *TokenRequestRecord) { rec.Username = claims.Subject })

	s.mu.Lock()
	defer s.mu.Unlock()
	now = s.now()
	v := c.JWT
	if !v.AllowJTIReuse && s.jtiSeen(c.ID, claims.ID, now) {
		deny(rejectJTIReused)
		return
	}
	u := s.activeUser(claims.Subject)
	if u == nil {
		deny(rejectUnknownUser)
		return
	}
	// Only an accepted assertion spends its jti: a rejected one may be
	// fixed and sent again.
	if !v.AllowJTIReuse {
		s.rememberJTI(c.ID, claims.ID, claims.Expiry.Time().Add(v.ClockSkew), now)
	}
	sess := s.session(sessionKey{clientID: c.ID, username: u.Username})
	s.writeToken(w, c, s.currentAccess(sess, c, u.Username, now), nil)
}

// verifyAssertion checks the assertion's signature and claims against c's
// verifier at now, and returns its claims or the reason it was rejected.
// Callers do not hold mu: it may fetch the JWKS.
func (s *Simulator) verifyAssertion(ctx context.Context, c OAuthClient, assertion string, now time.Time) (jwt.Claims, string) {
	v := c.JWT
	tok, err := jwt.ParseSigned(assertion, jwtAlgorithms)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return jwt.Claims{}, rejectAlg
		}
		return jwt.Claims{}, rejectMalformed
	}
	keys, reason := s.verificationKeys(ctx, v, tok.Headers[0].KeyID, now)
	if reason != "" {
		return jwt.Claims{}, reason
	}
	// A JWKS may hold several keys under one kid (RFC 7517 allows it): any
	// of them may have signed.
	var key any
	for _, k := range keys {
		if tok.Claims(k) == nil {
			key = k
			break
		}
	}
	if key == nil {
		return jwt.Claims{}, rejectBadSignature
	}
	var claims jwt.Claims
	if err := tok.Claims(key, &claims); err != nil {
		return jwt.Claims{}, rejectMalformed
	}
	if claims.Expiry == nil {
		return jwt.Claims{}, rejectNoExp
	}
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer:      c.ID,
		AnyAudience: jwt.Audience{v.audience(c.ID)},
		Time:        now,
	}, v.ClockSkew)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return jwt.Claims{}, rejectIss
	case errors.Is(err, jwt.ErrInvalidAudience):
		return jwt.Claims{}, rejectAud
	case errors.Is(err, jwt.ErrExpired):
		return jwt.Claims{}, rejectExpired
	case errors.Is(err, jwt.ErrNotValidYet):
		return jwt.Claims{}, rejectNotYetValid
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return jwt.Claims{}, rejectIatInFuture
	default:
		return jwt.Claims{}, rejectMalformed
	}
	if claims.ID == "" && !v.AllowJTIReuse {
		return jwt.Claims{}, rejectNoJTI
	}
	return claims, ""
}

// verificationKeys returns the public keys that may have signed an assertion
// with kid: the verifier map's certificate, or else the JWKS's keys.
func (s *Simulator) verificationKeys(ctx context.Context, v *JWTVerifier, kid string, now time.Time) ([]any, string) {
	if kid == "" {
		return nil, rejectUnknownKID
	}
	if cert, ok := v.Certificates[kid]; ok && cert != nil {
		return []any{cert.PublicKey}, ""
	}
	if v.JWKSURL == "" {
		return nil, rejectUnknownKID
	}
	set, reason := s.jwks(ctx, v, now)
	if reason != "" {
		return nil, reason
	}
	var keys []any
	for _, k := range set.Key(kid) {
		keys = append(keys, k.Key)
	}
	if len(keys) == 0 {
		return nil, rejectUnknownKID
	}
	return keys, ""
}

// jwks returns v's JWKS document: the cached one until it expires, else a
// fresh one. It holds mu only around the cache, never during the fetch.
// Concurrent requests finding no valid entry each fetch.
func (s *Simulator) jwks(ctx context.Context, v *JWTVerifier, now time.Time) (jose.JSONWebKeySet, string) {
	s.mu.Lock()
	e, ok := s.jwksCache[v.JWKSURL]
	if !ok || !now.Before(e.expiry) {
		s.jwksFetches[v.JWKSURL]++
	}
	s.mu.Unlock()
	if ok && now.Before(e.expiry) {
		return e.keys, ""
	}

	set, reason := s.fetchJWKS(ctx, v.JWKSURL)
	if reason != "" {
		return jose.JSONWebKeySet{}, reason
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jwksCache[v.JWKSURL] = &jwksEntry{keys: set, expiry: now.Add(orDefault(v.JWKSCacheLifespan, DefaultJWKSCacheLifespan))}
	return set, ""
}

// fetchJWKS GETs a JWKS document. A document with any key that is not
// public is refused whole: whoever publishes private keys has leaked them,
// and none of its keys can be trusted.
func (s *Simulator) fetchJWKS(ctx context.Context, url string) (jose.JSONWebKeySet, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return jose.JSONWebKeySet{}, rejectJWKSFetch
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.jwksClient.Do(req)
	if err != nil {
		return jose.JSONWebKeySet{}, rejectJWKSFetch
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil || resp.StatusCode != http.StatusOK || len(body) > maxJWKSBytes {
		return jose.JSONWebKeySet{}, rejectJWKSFetch
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return jose.JSONWebKeySet{}, rejectJWKSMalformed
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return jose.JSONWebKeySet{}, rejectJWKSPrivateKey
		}
	}
	return set, ""
}

// jtiSeen reports whether clientID had an assertion with jti accepted that
// has not yet expired. Callers hold mu.
func (s *Simulator) jtiSeen(clientID, jti string, now time.Time) bool {
	until, ok := s.jtis[clientID][jti]
	return ok && !now.After(until)
}

// rememberJTI spends jti for clientID until until (the assertion's exp plus
// the clock skew: after that the assertion is rejected as expired anyway).
// Callers hold mu.
func (s *Simulator) rememberJTI(clientID, jti string, until, now time.Time) {
	seen := s.jtis[clientID]
	if seen == nil {
		seen = map[string]time.Time{}
		s.jtis[clientID] = seen
	}
	if len(seen) >= maxJTIs {
		maps.DeleteFunc(seen, func(_ string, u time.Time) bool { return now.After(u) })
	}
	for len(seen) >= maxJTIs {
		soonest := ""
		for k, u := range seen {
			if soonest == "" || u.Before(seen[soonest]) {
				soonest = k
			}
		}
		delete(seen, soonest)
	}
	seen[jti] = until
}

// JWKSFetches counts the GET requests the simulator sent to url for a JWKS
// document, failed and refused ones included.
func (s *Simulator) JWKSFetches(url string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jwksFetches[url]
}

// VerifierCertificate makes a self-signed certificate for key, valid for a
// day: what an administrator puts in the JWT verifier map for a key.
func VerifierCertificate(key crypto.Signer, name string) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
