package simulator_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// signingKey is a key snowauth would sign assertions with, under a kid.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func rsaKey(t *testing.T, kid string) *signingKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &signingKey{kid: kid, alg: jose.RS256, priv: k}
}

func ecKey(t *testing.T, kid string) *signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signingKey{kid: kid, alg: jose.ES256, priv: k}
}

// public is the key as a JWKS publishes it.
func (k *signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// certificate is a self-signed certificate for the key, as an administrator
// would upload to the JWT verifier map.
func (k *signingKey) certificate(t *testing.T) *x509.Certificate {
	t.Helper()
	cert, err := simulator.VerifierCertificate(k.priv, "snowauth "+k.kid)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// sign makes a compact JWS of claims with the key, its kid and typ JWT.
func (k *signingKey) sign(t *testing.T, claims jwt.Claims) string {
	t.Helper()
	return signWith(t, jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, claims)
}

func signWith(t *testing.T, key jose.SigningKey, claims jwt.Claims) string {
	t.Helper()
	signer, err := jose.NewSigner(key, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claimsAt are the claims snowauth sends at now: valid for five minutes,
// with a fresh jti.
func claimsAt(now time.Time) jwt.Claims {
	return jwt.Claims{
		Issuer:    clientID,
		Subject:   username,
		Audience:  jwt.Audience{clientID},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(5 * time.Minute)),
		ID:        rand.Text(),
	}
}

func jwtGrant(assertion string) url.Values {
	return url.Values{"grant_type": {simulator.GrantJWTBearer}, "client_id": {clientID}, "client_secret": {secret},
		"assertion": {assertion}}
}

// withJWT is an instance whose client has the JWT bearer configuration v.
func withJWT(t *testing.T, opts simulator.Options, v simulator.JWTVerifier) *instance {
	t.Helper()
	in := newInstance(t, opts)
	in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, JWT: &v})
	return in
}

// lastRecord is the simulator's record of the latest token request.
func lastRecord(t *testing.T, in *instance) simulator.TokenRequestRecord {
	t.Helper()
	log := in.TokenRequestLog()
	if len(log) == 0 {
		t.Fatal("no token request recorded")
	}
	return log[len(log)-1]
}

// jwksServer publishes a JWKS document the test can change, over plain HTTP
// on loopback.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	doc    []byte
	status int
	hits   int
}

func newJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	t.Helper()
	j := &jwksServer{status: http.StatusOK}
	j.publish(t, keys...)
	j.Server = httptest.NewServer(http.HandlerFunc(j.serve))
	t.Cleanup(j.Close)
	return j
}

func (j *jwksServer) serve(w http.ResponseWriter, _ *http.Request) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.hits++
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(j.status)
	_, _ = w.Write(j.doc)
}

// publish replaces the document with a key set of keys.
func (j *jwksServer) publish(t *testing.T, keys ...jose.JSONWebKey) {
	t.Helper()
	doc, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	j.serveRaw(http.StatusOK, doc)
}

func (j *jwksServer) serveRaw(status int, doc []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.status, j.doc = status, doc
}

func (j *jwksServer) requests() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.hits
}

func TestJWTBearerGrant(t *testing.T) {
	t.Run("accepts an RS256 assertion whose kid is in the verifier map, without a refresh token", func(t *testing.T) {
		g := NewWithT(t)
		key := rsaKey(t, "rsa-1")
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{
			Certificates: map[string]*x509.Certificate{key.kid: key.certificate(t)},
		})

		a := in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now()))))

		g.Expect(a.status).To(Equal(200), a.body)
		g.Expect(a.header.Get("Cache-Control")).To(Equal("no-store"))
		g.Expect(a.json).To(HaveKeyWithValue("expires_in", BeEquivalentTo(1799)))
		g.Expect(a.json).To(HaveKeyWithValue("token_type", "Bearer"))
		g.Expect(a.str("access_token")).NotTo(BeEmpty())
		g.Expect(a.json).NotTo(HaveKey("refresh_token"))
		g.Expect(lastRecord(t, in)).To(And(
			HaveField("ClientID", clientID),
			HaveField("Grant", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
			HaveField("Username", username),
			HaveField("Status", 200),
			HaveField("Rejection", ""),
		))
	})

	t.Run("gives a token that acts as the sub user on the REST API", func(t *testing.T) {
		g := NewWithT(t)
		key := rsaKey(t, "rsa-1")
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{
			Certificates: map[string]*x509.Certificate{key.kid: key.certificate(t)},
		})
		in.AddUser(simulator.User{Username: "integration.bot"})
		claims := claimsAt(in.Now())
		claims.Subject = "integration.bot"

		tok := in.token(t, jwtGrant(key.sign(t, claims))).str("access_token")
		a := in.get(t, "/api/now/ui/user/current_user", tok)

		g.Expect(a.status).To(Equal(200), a.body)
		g.Expect(a.json).To(HaveKeyWithValue("result", HaveKeyWithValue("user_name", "integration.bot")))
	})

	t.Run("accepts an ES256 assertion whose key is published at the JWKS URL", func(t *testing.T) {
		g := NewWithT(t)
		key := ecKey(t, "ec-1")
		jwks := newJWKSServer(t, rsaKey(t, "other").public(), key.public())
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{JWKSURL: jwks.URL})

		a := in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now()))))

		g.Expect(a.status).To(Equal(200), a.body)
		g.Expect(a.json).NotTo(HaveKey("refresh_token"))
		g.Expect(in.get(t, "/api/now/ui/user/current_user", a.str("access_token")).json).
			To(HaveKeyWithValue("result", HaveKeyWithValue("user_name", username)))
		g.Expect(in.JWKSFetches(jwks.URL)).To(Equal(1))
	})

	t.Run("prefers the verifier map's certificate to the JWKS", func(t *testing.T) {
		g := NewWithT(t)
		key := rsaKey(t, "rsa-1")
		jwks := newJWKSServer(t)
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{
			Certificates: map[string]*x509.Certificate{key.kid: key.certificate(t)},
			JWKSURL:      jwks.URL,
		})

		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		g.Expect(in.JWKSFetches(jwks.URL)).To(Equal(0))
		g.Expect(jwks.requests()).To(Equal(0))
	})

	t.Run("returns the access token a password grant got for the same client and user", func(t *testing.T) {
		g := NewWithT(t)
		key := rsaKey(t, "rsa-1")
		in := newInstance(t, simulator.Options{})
		in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, JWT: &simulator.JWTVerifier{
			Certificates: map[string]*x509.Certificate{key.kid: key.certificate(t)},
		}})
		first := in.token(t, passwordGrant()).str("access_token")

		a := in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now()))))

		g.Expect(a.str("access_token")).To(Equal(first))
	})

	t.Run("uses the client's access token lifespan", func(t *testing.T) {
		g := NewWithT(t)
		key := rsaKey(t, "rsa-1")
		in := newInstance(t, simulator.Options{})
		in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, AccessTokenLifespan: time.Hour,
			JWT: &simulator.JWTVerifier{Certificates: map[string]*x509.Certificate{key.kid: key.certificate(t)}}})

		a := in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now()))))

		g.Expect(a.json).To(HaveKeyWithValue("expires_in", BeEquivalentTo(3599)))
	})

	t.Run("accepts the configured audience instead of the client ID", func(t *testing.T) {
		g := NewWithT(t)
		key := rsaKey(t, "rsa-1")
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{
			Certificates: map[string]*x509.Certificate{key.kid: key.certificate(t)},
			Audience:     "https://example.service-now.com/oauth_token.do",
		})
		claims := claimsAt(in.Now())
		claims.Audience = jwt.Audience{"https://example.service-now.com/oauth_token.do"}

		g.Expect(in.token(t, jwtGrant(key.sign(t, claims))).status).To(Equal(200))

		claims = claimsAt(in.Now())
		g.Expect(in.token(t, jwtGrant(key.sign(t, claims))).status).To(Equal(401))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("aud"))
	})
}

func TestJWTBearerRejections(t *testing.T) {
	key := rsaKey(t, "rsa-1")
	impostor := rsaKey(t, "rsa-1") // same kid, another key
	stranger := ecKey(t, "ec-unknown")
	verifier := simulator.JWTVerifier{Certificates: map[string]*x509.Certificate{key.kid: key.certificate(t)}}
	hmacKey := []byte("a shared secret of at least thirty-two bytes")

	for _, tc := range []struct {
		name      string
		assertion func(t *testing.T, now time.Time) string
		rejection string
	}{
		{"rejects an assertion whose kid is unknown", func(t *testing.T, now time.Time) string {
			return stranger.sign(t, claimsAt(now))
		}, "unknown kid"},
		{"rejects an assertion without a kid", func(t *testing.T, now time.Time) string {
			return signWith(t, jose.SigningKey{Algorithm: jose.RS256, Key: key.priv}, claimsAt(now))
		}, "unknown kid"},
		{"rejects an assertion signed by another key under a known kid", func(t *testing.T, now time.Time) string {
			return impostor.sign(t, claimsAt(now))
		}, "bad signature"},
		{"rejects an HS256 assertion", func(t *testing.T, now time.Time) string {
			return signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: hmacKey, KeyID: key.kid}}, claimsAt(now))
		}, "alg"},
		{"rejects an assertion that is not a JWS", func(*testing.T, time.Time) string {
			return "not.a.jwt"
		}, "malformed assertion"},
		{"rejects a request without an assertion", func(*testing.T, time.Time) string {
			return ""
		}, "malformed assertion"},
		{"rejects an assertion issued by another client", func(t *testing.T, now time.Time) string {
			c := claimsAt(now)
			c.Issuer = "another-client"
			return key.sign(t, c)
		}, "iss"},
		{"rejects an assertion for another audience", func(t *testing.T, now time.Time) string {
			c := claimsAt(now)
			c.Audience = jwt.Audience{"https://example.service-now.com/oauth_token.do"}
			return key.sign(t, c)
		}, "aud"},
		{"rejects an expired assertion", func(t *testing.T, now time.Time) string {
			c := claimsAt(now.Add(-10 * time.Minute))
			return key.sign(t, c)
		}, "expired"},
		{"rejects an assertion without exp", func(t *testing.T, now time.Time) string {
			c := claimsAt(now)
			c.Expiry = nil
			return key.sign(t, c)
		}, "no exp"},
		{"rejects an assertion whose nbf is ahead", func(t *testing.T, now time.Time) string {
			c := claimsAt(now)
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute))
			return key.sign(t, c)
		}, "not yet valid"},
		{"rejects an assertion whose iat is ahead", func(t *testing.T, now time.Time) string {
			c := claimsAt(now)
			c.IssuedAt = jwt.NewNumericDate(now.Add(time.Minute))
			return key.sign(t, c)
		}, "iat in the future"},
		{"rejects an assertion without jti", func(t *testing.T, now time.Time) string {
			c := claimsAt(now)
			c.ID = ""
			return key.sign(t, c)
		}, "no jti"},
		{"rejects an assertion for an unknown user", func(t *testing.T, now time.Time) string {
			c := claimsAt(now)
			c.Subject = "nobody"
			return key.sign(t, c)
		}, "unknown user"},
		{"rejects an assertion for an inactive user", func(t *testing.T, now time.Time) string {
			c := claimsAt(now)
			c.Subject = "retired"
			return key.sign(t, c)
		}, "unknown user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := withJWT(t, simulator.Options{}, verifier)
			in.AddUser(simulator.User{Username: "retired", Inactive: true})

			a := in.token(t, jwtGrant(tc.assertion(t, in.Now())))

			g.Expect(a.status).To(Equal(401))
			g.Expect(a.body).To(Equal(deniedBody))
			g.Expect(lastRecord(t, in)).To(And(HaveField("Status", 401), HaveField("Rejection", tc.rejection)))
		})
	}

	t.Run("rejects a wrong client secret before looking at the assertion", func(t *testing.T) {
		g := NewWithT(t)
		in := withJWT(t, simulator.Options{}, verifier)
		form := jwtGrant(key.sign(t, claimsAt(in.Now())))
		form.Set("client_secret", "wrong")

		a := in.token(t, form)

		g.Expect(a.status).To(Equal(401))
		g.Expect(a.body).To(Equal(deniedBody))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("client"))
	})

	t.Run("refuses the grant to a client without a JWT configuration", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})

		a := in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now()))))

		g.Expect(a.status).To(Equal(401))
		g.Expect(a.body).To(Equal(deniedBody))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("grant not allowed"))
	})

	t.Run("refuses the grant when the client's grants leave it out", func(t *testing.T) {
		g := NewWithT(t)
		in := newInstance(t, simulator.Options{})
		v := verifier
		in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret, Grants: []string{"password"}, JWT: &v})

		a := in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now()))))

		g.Expect(a.status).To(Equal(401))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("grant not allowed"))
		g.Expect(in.token(t, passwordGrant()).status).To(Equal(200))
	})

	t.Run("rejects an assertion sent in the query string", func(t *testing.T) {
		g := NewWithT(t)
		in := withJWT(t, simulator.Options{}, verifier)
		form := jwtGrant(key.sign(t, claimsAt(in.Now())))
		query := url.Values{"assertion": form["assertion"]}
		form.Del("assertion")
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			in.URL()+"/oauth_token.do?"+query.Encode(), strings.NewReader(form.Encode()))
		g.Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")

		a := in.do(t, req)

		g.Expect(a.status).To(Equal(401))
		g.Expect(a.body).To(Equal(deniedBody))
	})

	t.Run("records why without the assertion or the secret", func(t *testing.T) {
		g := NewWithT(t)
		in := withJWT(t, simulator.Options{}, verifier)
		assertion := impostor.sign(t, claimsAt(in.Now()))

		in.token(t, jwtGrant(assertion))

		rec := lastRecord(t, in)
		g.Expect(rec.Rejection).NotTo(ContainSubstring(assertion))
		g.Expect(rec.Rejection).NotTo(ContainSubstring(secret))
		g.Expect(rec.Username).To(BeEmpty(), "sub is not trusted before the signature is")
	})
}

func TestJWTBearerReplayAndClock(t *testing.T) {
	key := rsaKey(t, "rsa-1")
	certs := map[string]*x509.Certificate{key.kid: key.certificate(t)}

	t.Run("accepts each jti once, and a fresh one after", func(t *testing.T) {
		g := NewWithT(t)
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{Certificates: certs})
		assertion := key.sign(t, claimsAt(in.Now()))
		g.Expect(in.token(t, jwtGrant(assertion)).status).To(Equal(200))

		again := in.token(t, jwtGrant(assertion))

		g.Expect(again.status).To(Equal(401))
		g.Expect(again.body).To(Equal(deniedBody))
		g.Expect(lastRecord(t, in)).To(And(HaveField("Rejection", "jti reused"), HaveField("Username", username)))
		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
	})

	t.Run("does not spend the jti of a rejected assertion", func(t *testing.T) {
		g := NewWithT(t)
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{Certificates: certs})
		claims := claimsAt(in.Now())
		claims.Subject = "not-yet-created"
		g.Expect(in.token(t, jwtGrant(key.sign(t, claims))).status).To(Equal(401))
		in.AddUser(simulator.User{Username: "not-yet-created"})

		g.Expect(in.token(t, jwtGrant(key.sign(t, claims))).status).To(Equal(200))
	})

	t.Run("accepts a reused jti when JTI verification is off", func(t *testing.T) {
		g := NewWithT(t)
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{Certificates: certs, AllowJTIReuse: true})
		claims := claimsAt(in.Now())
		claims.ID = ""
		assertion := key.sign(t, claims)

		g.Expect(in.token(t, jwtGrant(assertion)).status).To(Equal(200))
		g.Expect(in.token(t, jwtGrant(assertion)).status).To(Equal(200))
	})

	t.Run("tolerates iat in the future only within the clock skew", func(t *testing.T) {
		g := NewWithT(t)
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{Certificates: certs})
		ahead := func() string {
			c := claimsAt(in.Now())
			c.IssuedAt = jwt.NewNumericDate(in.Now().Add(30 * time.Second))
			return key.sign(t, c)
		}

		g.Expect(in.token(t, jwtGrant(ahead())).status).To(Equal(401), "the default clock skew is 0 s")
		g.Expect(lastRecord(t, in).Rejection).To(Equal("iat in the future"))

		in.AddClient(simulator.OAuthClient{ID: clientID, Secret: secret,
			JWT: &simulator.JWTVerifier{Certificates: certs, ClockSkew: 60 * time.Second}})
		g.Expect(in.token(t, jwtGrant(ahead())).status).To(Equal(200))
	})

	t.Run("rejects an assertion once the simulator clock passes its exp", func(t *testing.T) {
		g := NewWithT(t)
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{Certificates: certs})
		assertion := key.sign(t, claimsAt(in.Now()))
		in.Advance(6 * time.Minute)

		g.Expect(in.token(t, jwtGrant(assertion)).status).To(Equal(401))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("expired"))
	})
}

func TestJWTBearerJWKS(t *testing.T) {
	t.Run("ignores a newly published kid until the JWKS cache lifespan has passed", func(t *testing.T) {
		g := NewWithT(t)
		old, next := rsaKey(t, "2025"), ecKey(t, "2026")
		jwks := newJWKSServer(t, old.public())
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{JWKSURL: jwks.URL})
		g.Expect(in.token(t, jwtGrant(old.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		jwks.publish(t, old.public(), next.public())

		g.Expect(in.token(t, jwtGrant(next.sign(t, claimsAt(in.Now())))).status).To(Equal(401))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("unknown kid"))
		in.Advance(simulator.DefaultJWKSCacheLifespan - time.Minute)
		g.Expect(in.token(t, jwtGrant(next.sign(t, claimsAt(in.Now())))).status).To(Equal(401))
		g.Expect(in.JWKSFetches(jwks.URL)).To(Equal(1), "an unknown kid does not refetch within the lifespan")

		in.Advance(2 * time.Minute)
		g.Expect(in.token(t, jwtGrant(next.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		g.Expect(in.token(t, jwtGrant(old.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		g.Expect(in.JWKSFetches(jwks.URL)).To(Equal(2))
		g.Expect(jwks.requests()).To(Equal(2))
	})

	t.Run("follows the configured JWKS cache lifespan", func(t *testing.T) {
		g := NewWithT(t)
		key := ecKey(t, "ec-1")
		jwks := newJWKSServer(t, key.public())
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{JWKSURL: jwks.URL, JWKSCacheLifespan: 5 * time.Minute})
		for range 3 {
			g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		}
		g.Expect(in.JWKSFetches(jwks.URL)).To(Equal(1))

		in.Advance(5 * time.Minute)
		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		g.Expect(in.JWKSFetches(jwks.URL)).To(Equal(2))
	})

	t.Run("stops accepting a key removed from the JWKS once the cache lifespan has passed", func(t *testing.T) {
		g := NewWithT(t)
		key := ecKey(t, "ec-1")
		jwks := newJWKSServer(t, key.public())
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{JWKSURL: jwks.URL})
		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		jwks.publish(t)

		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200), "still cached")
		in.Advance(simulator.DefaultJWKSCacheLifespan)
		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(401))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("unknown kid"))
	})

	t.Run("rejects while the JWKS cannot be fetched, and fetches again at the next request", func(t *testing.T) {
		g := NewWithT(t)
		key := ecKey(t, "ec-1")
		jwks := newJWKSServer(t, key.public())
		jwks.serveRaw(http.StatusServiceUnavailable, []byte("down for maintenance"))
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{JWKSURL: jwks.URL})

		a := in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now()))))

		g.Expect(a.status).To(Equal(401))
		g.Expect(a.body).To(Equal(deniedBody))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("jwks fetch failed"))
		jwks.publish(t, key.public())
		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		g.Expect(in.JWKSFetches(jwks.URL)).To(Equal(2))
	})

	t.Run("rejects when nothing answers at the JWKS URL", func(t *testing.T) {
		g := NewWithT(t)
		key := ecKey(t, "ec-1")
		jwks := newJWKSServer(t)
		gone := jwks.URL
		jwks.Close()
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{JWKSURL: gone})

		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(401))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("jwks fetch failed"))
		g.Expect(in.JWKSFetches(gone)).To(Equal(1))
	})

	t.Run("rejects when the JWKS document is not a key set", func(t *testing.T) {
		g := NewWithT(t)
		key := ecKey(t, "ec-1")
		jwks := newJWKSServer(t)
		jwks.serveRaw(http.StatusOK, []byte(`<html>sign in</html>`))
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{JWKSURL: jwks.URL})

		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(401))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("jwks malformed"))
	})

	t.Run("refuses a whole JWKS document that contains a private key", func(t *testing.T) {
		g := NewWithT(t)
		key, leaked := ecKey(t, "ec-1"), rsaKey(t, "leaked")
		jwks := newJWKSServer(t, key.public(), jose.JSONWebKey{Key: leaked.priv, KeyID: leaked.kid, Algorithm: "RS256", Use: "sig"})
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{JWKSURL: jwks.URL})

		a := in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now()))))

		g.Expect(a.status).To(Equal(401))
		g.Expect(a.body).To(Equal(deniedBody))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("jwks has private keys"))
		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(401), "a refused document is not cached")
		g.Expect(in.JWKSFetches(jwks.URL)).To(Equal(2))

		jwks.publish(t, key.public())
		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		g.Expect(in.JWKSFetches(jwks.URL)).To(Equal(3))
	})

	t.Run("refuses a JWKS document that contains a shared key", func(t *testing.T) {
		g := NewWithT(t)
		key := ecKey(t, "ec-1")
		jwks := newJWKSServer(t, key.public(), jose.JSONWebKey{Key: []byte("a shared secret of at least thirty-two bytes"), KeyID: "hs"})
		in := withJWT(t, simulator.Options{}, simulator.JWTVerifier{JWKSURL: jwks.URL})

		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(401))
		g.Expect(lastRecord(t, in).Rejection).To(Equal("jwks has private keys"))
	})

	t.Run("fetches the JWKS with Options.JWKSClient", func(t *testing.T) {
		g := NewWithT(t)
		key := ecKey(t, "ec-1")
		doc, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.public()}})
		g.Expect(err).NotTo(HaveOccurred())
		tlsJWKS := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(doc) }))
		t.Cleanup(tlsJWKS.Close)
		in := withJWT(t, simulator.Options{JWKSClient: tlsJWKS.Client()}, simulator.JWTVerifier{JWKSURL: tlsJWKS.URL})

		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200),
			"only the test server's client trusts its certificate")
	})

	t.Run("keeps serving while it fetches the JWKS from a server that calls the instance", func(t *testing.T) {
		g := NewWithT(t)
		key := ecKey(t, "ec-1")
		doc, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.public()}})
		g.Expect(err).NotTo(HaveOccurred())
		var in *instance
		var calledBack atomic.Int32
		jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Both need the simulator's lock: held during the fetch,
			// they would wait for the fetch to give up.
			_ = in.Now()
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, in.URL()+"/api/now/table/sys_user", nil)
			if resp, err := in.http.Do(req); err == nil {
				calledBack.Store(int32(resp.StatusCode))
				_ = resp.Body.Close()
			}
			_, _ = w.Write(doc)
		}))
		t.Cleanup(jwks.Close)
		in = withJWT(t, simulator.Options{JWKSClient: &http.Client{Timeout: 5 * time.Second}},
			simulator.JWTVerifier{JWKSURL: jwks.URL})

		g.Expect(in.token(t, jwtGrant(key.sign(t, claimsAt(in.Now())))).status).To(Equal(200))
		g.Expect(calledBack.Load()).To(BeEquivalentTo(401), "the instance answered the JWKS server's own request")
	})
}
