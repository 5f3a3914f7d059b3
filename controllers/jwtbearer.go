package controllers

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/credentials"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// The JWTBearer grant signs an assertion per token request. With managed
// keys (the default) snowauth owns the key pairs: the private keys live in
// the connection's Secret <name>-signing-keys, the public keys in
// status.jwtBearer.keys, which the authorization server serves as the
// connection's JWKS document. The instance fetches that document and caches
// it, so a key is used only once it has been published for
// rotation.publishAhead (longer than the instance's JWKS cache lifespan),
// and an old key stays published until every assertion it signed has
// expired. "Published" means written in status: a key the reconcile adds
// is only published once the status write lands, which the next reconcile
// sees.

// Rotation defaults (see snowv1.KeyRotationSpec).
const (
	defaultRotationEvery = 30 * 24 * time.Hour
	defaultPublishAhead  = 24 * time.Hour
	// maxPublishedKeys is status.jwtBearer.keys' MaxItems.
	maxPublishedKeys = 4
)

// jwtScope is what one reconcile learns about the JWTBearer grant's key.
type jwtScope struct {
	// active is the managed key that signs now; nil when none does yet.
	active *managedKey
	// pending says no key is published yet: a token request waits for the
	// next reconcile (the status write that publishes it).
	pending bool
	// secret is the signing-keys Secret, nil when there is none; taken says
	// a Secret not the connection's has its name.
	secret *corev1.Secret
	taken  bool
}

// managedKey is one key pair in the signing-keys Secret.
type managedKey struct {
	ID        string    `json:"kid"`
	Algorithm string    `json:"alg"`
	Created   time.Time `json:"created"`
	// PrivateKey is PKCS#8 PEM.
	PrivateKey string `json:"privateKey"`

	signer crypto.Signer
}

// keyPlan is what planKeys decides.
type keyPlan struct {
	// create says a new key is due (none yet, its rotation time, or
	// another algorithm).
	create bool
	// keep are the keys to keep, oldest first; published what status
	// lists; active the signing key's index in keep (-1: none yet).
	keep      []managedKey
	published []snowv1.PublishedKey
	active    int
	// nextRotation is when the next key is due; wake the other times
	// something changes (a key starts signing, an old one retires).
	nextRotation time.Time
	wake         []time.Time
}

// keyTimes are the rotation settings, with the defaults filled in.
type keyTimes struct {
	every, publishAhead time.Duration
	// retireAfter is how long an old key stays published after it last
	// signed: an assertion's lifetime and clock tolerance, and a minute.
	retireAfter time.Duration
}

func rotationOf(conn *snowv1.ServiceNowConnection) keyTimes {
	_, lifetime, tolerance, _ := credentials.JWTSettings(conn)
	t := keyTimes{every: defaultRotationEvery, publishAhead: defaultPublishAhead, retireAfter: lifetime + tolerance + time.Minute}
	if j := conn.Spec.JWTBearer; j != nil && j.Rotation != nil {
		if j.Rotation.Every != nil {
			t.every = j.Rotation.Every.Duration
		}
		if j.Rotation.PublishAhead != nil {
			t.publishAhead = j.Rotation.PublishAhead.Duration
		}
	}
	return t
}

// planKeys decides the managed keys' next step. keys are the stored keys,
// published the status as read (what the authorization server serves).
//
//   - The active key is the newest one published at least publishAhead
//     ago; failing that, the oldest published one (a first key, which no
//     instance can have cached a document without; or a status that was
//     lost). A key not published yet never signs.
//   - A new key is due when there is none, when the active key is the
//     newest and its rotation time has come, or when the spec asks for
//     another algorithm.
//   - An older key retires retireAfter after the first reconcile that found
//     it superseded.
func planKeys(keys []managedKey, published []snowv1.PublishedKey, alg string, now time.Time, t keyTimes) keyPlan {
	keys = slices.Clone(keys)
	slices.SortStableFunc(keys, func(a, b managedKey) int { return a.Created.Compare(b.Created) })
	inStatus := map[string]snowv1.PublishedKey{}
	for _, p := range published {
		inStatus[p.KeyID] = p
	}
	p := keyPlan{active: -1}
	for i := len(keys) - 1; i >= 0; i-- {
		if s, ok := inStatus[keys[i].ID]; ok && !s.PublishedAt.Add(t.publishAhead).After(now) {
			p.active = i
			break
		}
	}
	if p.active < 0 {
		p.active = slices.IndexFunc(keys, func(k managedKey) bool { _, ok := inStatus[k.ID]; return ok })
	}

	for i, k := range keys {
		s, ok := inStatus[k.ID]
		if !ok {
			s = snowv1.PublishedKey{KeyID: k.ID, Algorithm: snowv1.JWTAlgorithm(k.Algorithm), PublishedAt: metav1.Time{Time: now.Truncate(time.Second)}}
		}
		s.PublicKey = publicJWK(k)
		switch {
		case i == p.active:
			if s.SignsFrom == nil || s.SignsFrom.After(now) {
				s.SignsFrom = &metav1.Time{Time: now.Truncate(time.Second)}
			}
			s.RetiresAt = nil
		case p.active >= 0 && i < p.active:
			if s.RetiresAt == nil {
				s.RetiresAt = &metav1.Time{Time: now.Add(t.retireAfter).Truncate(time.Second)}
			}
			if !s.RetiresAt.After(now) {
				continue // every assertion it signed has expired
			}
			p.wake = append(p.wake, s.RetiresAt.Time)
		default: // waiting to sign
			from := s.PublishedAt.Add(t.publishAhead).Truncate(time.Second)
			s.SignsFrom, s.RetiresAt = &metav1.Time{Time: from}, nil
			p.wake = append(p.wake, from)
		}
		p.keep = append(p.keep, k)
		p.published = append(p.published, s)
		if i == p.active {
			p.active = len(p.keep) - 1
		}
	}
	if n := len(p.keep) - maxPublishedKeys + 1; n > 0 && p.active >= n {
		// Room for one more: the oldest superseded keys go first.
		p.keep, p.published, p.active = p.keep[n:], p.published[n:], p.active-n
	}

	if len(p.keep) == 0 {
		p.create = true
		p.nextRotation = now
		return p
	}
	newest := p.keep[len(p.keep)-1]
	p.nextRotation = newest.Created.Add(t.every)
	p.create = p.active == len(p.keep)-1 && (!p.nextRotation.After(now) || newest.Algorithm != alg)
	if !p.create {
		p.wake = append(p.wake, p.nextRotation)
	}
	return p
}

// publicJWK is k's public key as a JSON Web Key: what status, and so the
// JWKS document, carries. The private half is never marshalled.
func publicJWK(k managedKey) string {
	b, err := json.Marshal(jose.JSONWebKey{Key: k.signer.Public(), KeyID: k.ID, Algorithm: k.Algorithm, Use: "sig"})
	if err != nil {
		return ""
	}
	return string(b)
}

// newManagedKey makes a key pair for alg, named by its thumbprint.
func newManagedKey(alg string, now time.Time) (managedKey, error) {
	signer, err := servicenow.GenerateKey(alg)
	if err != nil {
		return managedKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return managedKey{}, err
	}
	return managedKey{
		ID: credentials.KeyID(signer), Algorithm: alg, Created: now.UTC().Truncate(time.Second),
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), signer: signer,
	}, nil
}

// readKeys parses the signing-keys Secret. A key that does not parse is
// dropped (and so replaced): it could never sign.
func readKeys(secret *corev1.Secret) []managedKey {
	if secret == nil {
		return nil
	}
	var stored []managedKey
	if json.Unmarshal(secret.Data[snowv1.SigningKeysKey], &stored) != nil {
		return nil
	}
	keys := stored[:0]
	for _, k := range stored {
		var err error
		if k.signer, err = credentials.ParsePrivateKey([]byte(k.PrivateKey)); err == nil && servicenow.KeyFits(k.signer, k.Algorithm) == "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// signingKeys runs the managed keys' rotation: it reads the signing-keys
// Secret from the cache, makes, publishes and retires keys as planKeys
// says, and records them in status.jwtBearer. Without the authorization
// server there is nowhere to publish: the token request reports it.
func (r *ServiceNowConnectionReconciler) signingKeys(ctx context.Context, s *scope) error {
	s.jwt = jwtScope{}
	if s.conn.Spec.GrantType != snowv1.GrantJWTBearer {
		s.conn.Status.JWTBearer = nil
		return nil
	}
	alg, _, _, mode := credentials.JWTSettings(s.conn)
	if mode != snowv1.SigningKeyManaged {
		if st := s.conn.Status.JWTBearer; st != nil {
			st.JWKSURL, st.Keys, st.NextRotationTime = "", nil, nil
		}
		return nil
	}
	if r.Authorization == nil {
		return nil
	}
	secret := &corev1.Secret{}
	_, err := r.getSecret(ctx, types.NamespacedName{Namespace: s.conn.Namespace, Name: s.conn.SigningKeysSecretName()}, secret)
	switch {
	case err == nil && metav1.IsControlledBy(secret, s.conn):
		s.jwt.secret = secret
	case err == nil:
		s.jwt.taken = true
		return nil
	case !apierrors.IsNotFound(err):
		return err
	}
	st := s.conn.Status.JWTBearer
	if st == nil {
		st = &snowv1.JWTBearerStatus{}
	}
	t := rotationOf(s.conn)
	stored := readKeys(s.jwt.secret)
	plan := planKeys(stored, st.Keys, alg, s.now, t)
	keep := plan.keep
	if plan.create {
		k, err := newManagedKey(alg, s.now)
		if err != nil {
			return err
		}
		keep = append(keep, k)
		r.event(s.conn, corev1.EventTypeNormal, "SigningKeyCreated", "RotateKey",
			"made signing key %s (%s); it is published at %s and signs from %s", k.ID, alg,
			r.jwksURL(s.conn), s.now.Add(t.publishAhead).UTC().Format(time.RFC3339))
		// Published by this reconcile's status write; planned once more
		// so that status lists it.
		plan = planKeys(keep, st.Keys, alg, s.now, t)
	}
	if !sameKeys(stored, keep) {
		data, err := json.Marshal(keep)
		if err != nil {
			return err
		}
		if s.jwt.secret, err = r.writeOwnedSecret(ctx, s, s.conn.SigningKeysSecretName(), s.jwt.secret,
			map[string][]byte{snowv1.SigningKeysKey: data}, nil, "the JWT signing keys"); err != nil {
			if f := classify(err); f != nil && f.reason == snowv1.ReasonSecretConflict {
				s.jwt.taken = true
				return nil
			}
			return err
		}
	}
	if plan.active >= 0 {
		active := plan.keep[plan.active]
		s.jwt.active = &active
		if st.ActiveKeyID != "" && st.ActiveKeyID != active.ID {
			r.event(s.conn, corev1.EventTypeNormal, "SigningKeyRotated", "RotateKey",
				"signing key %s signs from now on; %s stays published until the assertions it signed have expired", active.ID, st.ActiveKeyID)
		}
		st.ActiveKeyID = active.ID
	} else {
		s.jwt.pending = true
		s.wake = append(s.wake, s.now.Add(time.Second))
	}
	st.JWKSURL = r.jwksURL(s.conn)
	st.Keys = plan.published
	st.NextRotationTime = &metav1.Time{Time: plan.nextRotation.Truncate(time.Second)}
	s.conn.Status.JWTBearer = st
	s.wake = append(s.wake, plan.wake...)
	return nil
}

// sameKeys says whether a and b hold the same keys.
func sameKeys(a, b []managedKey) bool {
	return slices.EqualFunc(a, b, func(x, y managedKey) bool { return x.ID == y.ID && x.PrivateKey == y.PrivateKey })
}

// jwksURL is where the authorization server publishes conn's JWKS.
func (r *ServiceNowConnectionReconciler) jwksURL(conn *snowv1.ServiceNowConnection) string {
	if r.Authorization == nil {
		return ""
	}
	return r.Authorization.Links.JWKSURL(conn.Namespace, conn.Name)
}

// addSigningKey gives a JWTBearer request its key: the managed active key,
// or (Provided) the credentials Secret's, whose certificate it keeps in
// status.
func (r *ServiceNowConnectionReconciler) addSigningKey(s *scope, c *credentials.Credentials) error {
	if c.Grant != servicenow.GrantJWTBearer {
		return nil
	}
	if _, _, _, mode := credentials.JWTSettings(s.conn); mode == snowv1.SigningKeyProvided {
		return r.certify(s, c.Client.JWT)
	}
	switch {
	case r.Authorization == nil:
		return needsPerson(snowv1.ReasonAuthorizationServerDisabled,
			"the JWTBearer grant's managed keys are published by the authorization server: start it (--authorization-external-url, "+
				"the chart's authorization.enable), or set spec.jwtBearer.signingKey to Provided")
	case s.jwt.taken:
		return needsPerson(snowv1.ReasonSecretConflict,
			"Secret %s exists and is not this connection's: delete it; snowauth keeps the JWT signing keys there", s.conn.SigningKeysSecretName())
	case s.jwt.active == nil:
		return fmt.Errorf("no signing key is published yet") // not reached: the trigger waits for one
	}
	c.Client.JWT.Key, c.Client.JWT.KeyID = s.jwt.active.signer, s.jwt.active.ID
	return nil
}

// certificateLifetime is how long the self-signed certificate for a
// provided key is valid; certificateRenewBefore how long before its end a
// new one is made, for a person to put in the instance's verifier map (the
// key stays the same, so the old certificate works until it expires).
const (
	certificateLifetime    = 365 * 24 * time.Hour
	certificateRenewBefore = 30 * 24 * time.Hour
)

// certify keeps in status a self-signed certificate for the provided key,
// for an instance's JWT verifier map (which takes a certificate, not a
// key): a new one when there is none or the key changed.
func (r *ServiceNowConnectionReconciler) certify(s *scope, a *servicenow.JWTAssertion) error {
	st := s.conn.Status.JWTBearer
	if st == nil {
		st = &snowv1.JWTBearerStatus{}
		s.conn.Status.JWTBearer = st
	}
	st.ActiveKeyID = a.KeyID
	same := certificateFor(st.Certificate, a.Key)
	if same && st.CertificateNotAfter != nil && st.CertificateNotAfter.After(s.now.Add(certificateRenewBefore)) {
		return nil
	}
	cert, notAfter, err := selfSigned(a.Key, s.conn, s.now)
	if err != nil {
		return err
	}
	st.PreviousCertificateNotAfter = nil
	if same && st.CertificateNotAfter != nil {
		st.PreviousCertificateNotAfter = st.CertificateNotAfter
		r.event(s.conn, corev1.EventTypeWarning, "CertificateRenewed", "RequestToken",
			"the certificate for key %s expires at %s: put the new one (kubectl servicenow jwt-certificate %s) in the instance's JWT verifier map before then",
			a.KeyID, st.CertificateNotAfter.UTC().Format(time.RFC3339), s.conn.Name)
	} else {
		r.event(s.conn, corev1.EventTypeNormal, "CertificateCreated", "RequestToken",
			"made a self-signed certificate for key %s, valid until %s: add it to the instance's JWT verifier map (kubectl servicenow jwt-certificate %s)",
			a.KeyID, notAfter.Format(time.RFC3339), s.conn.Name)
	}
	st.Certificate, st.CertificateNotAfter = cert, &metav1.Time{Time: notAfter}
	return nil
}

// certificateFor says whether certPEM is a certificate for key's public key.
func certificateFor(certPEM string, key crypto.Signer) bool {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return false
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// selfSigned makes a certificate for key, signed by key, naming conn.
func selfSigned(key crypto.Signer, conn *snowv1.ServiceNowConnection, now time.Time) (string, time.Time, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", time.Time{}, err
	}
	notAfter := now.Add(certificateLifetime).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "snowauth " + conn.Namespace + "/" + conn.Name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return "", time.Time{}, err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), notAfter, nil
}
