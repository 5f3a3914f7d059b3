package controllers

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/credentials"
)

// Horizons: the deadlines of the credentials an access token depends on.
// Past one, no new access token can be had until a person acts, and the
// first sign would otherwise be a failed refresh minutes before
// applications break. ServiceNow says none of them in any response, so
// each is what snowauth is told (a key of the credentials Secret, a spec
// lifespan) or made itself (a certificate), counted from what it saw.
//
// "First used" times are kept on the token Secret, as annotations holding
// the SHA-256 of the value and the time: only people who may read Secrets
// can read them, and a new value (a rotated client secret, a new refresh
// token) starts its clock afresh.

const (
	annotationRefreshTokenFirstUsed = "servicenow.snowauth.dev/refresh-token-first-used"
	annotationClientSecretFirstUsed = "servicenow.snowauth.dev/client-secret-first-used"

	defaultExpiryWarning = 21 * 24 * time.Hour
)

// firstUsedAnnotations are the token Secret annotations horizons keep.
var firstUsedAnnotations = []string{annotationRefreshTokenFirstUsed, annotationClientSecretFirstUsed}

// firstUsed is when value was first used, as the token Secret's annotation
// key records it ("<sha256> <RFC 3339 time>"); now when it records another
// value or nothing. It returns the annotation to keep.
func firstUsed(secret *corev1.Secret, key, value string, now time.Time) (time.Time, string) {
	sum := fingerprint(value)
	if secret != nil {
		if h, at, ok := strings.Cut(secret.Annotations[key], " "); ok && h == sum {
			if t, err := time.Parse(time.RFC3339, at); err == nil {
				return t, secret.Annotations[key]
			}
		}
	}
	now = now.UTC().Truncate(time.Second)
	return now, sum + " " + now.Format(time.RFC3339)
}

// sinceFirstUse is when value was first used (firstUsed), and the
// annotation to keep. When the token Secret lost the annotation (it was
// deleted and made again) while the credentials are the ones the horizon
// of kind was counted for, the count goes on from that horizon's start
// rather than from now, which would move the horizon later than the real
// end.
func sinceFirstUse(s *scope, c *credentials.Credentials, key, value string, kind snowv1.HorizonKind, span time.Duration) (time.Time, string) {
	since, note := firstUsed(s.secret, key, value, s.now)
	if s.secret != nil && s.secret.Annotations[key] != "" {
		return since, note // the annotation answered (its value, or a new one)
	}
	st := s.conn.Status
	same := st.CredentialsResourceVersion == c.Version || strings.HasPrefix(st.CredentialsResourceVersion, c.Version+"/")
	if i := slices.IndexFunc(st.Horizons, func(h snowv1.Horizon) bool { return h.Kind == kind }); i >= 0 && same {
		if start := st.Horizons[i].At.Add(-span); start.Before(since) {
			return start, fingerprint(value) + " " + start.UTC().Format(time.RFC3339)
		}
	}
	return since, note
}

// setHorizon records a horizon of kind in st, replacing the one there.
func setHorizon(st *snowv1.ServiceNowConnectionStatus, kind snowv1.HorizonKind, at time.Time, source string) {
	h := snowv1.Horizon{Kind: kind, At: metav1.Time{Time: at.UTC().Truncate(time.Second)}, Source: bound(source, 512)}
	if i := slices.IndexFunc(st.Horizons, func(h snowv1.Horizon) bool { return h.Kind == kind }); i >= 0 {
		st.Horizons[i] = h
		return
	}
	st.Horizons = append(st.Horizons, h)
}

func dropHorizon(st *snowv1.ServiceNowConnectionStatus, kind snowv1.HorizonKind) {
	st.Horizons = slices.DeleteFunc(st.Horizons, func(h snowv1.Horizon) bool { return h.Kind == kind })
	if len(st.Horizons) == 0 {
		st.Horizons = nil
	}
}

// observeHorizons records the horizons only the credentials Secret tells
// (the RefreshToken grant's refresh token, the client secret's age), once
// a token request has read it, and the first-used annotations the token
// Secret is to carry.
func observeHorizons(s *scope, c *credentials.Credentials) {
	st := &s.conn.Status
	s.firstUsed = map[string]string{}
	name := s.conn.Spec.CredentialsSecretRef.Name
	switch {
	case s.conn.Spec.GrantType != snowv1.GrantRefreshToken:
		if s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode {
			dropHorizon(st, snowv1.HorizonRefreshToken) // the AuthorizationCode grant's is kept in status (horizonStatus)
		}
	case c.RefreshTokenExpiresAt != nil:
		setHorizon(st, snowv1.HorizonRefreshToken, *c.RefreshTokenExpiresAt,
			fmt.Sprintf("key %s of credentials Secret %s", snowv1.CredentialsKeyRefreshTokenExpiresAt, name))
	default:
		lifespan := defaultRefreshTokenLifespan
		if rt := s.conn.Spec.RefreshToken; rt != nil && rt.Lifespan != nil {
			lifespan = rt.Lifespan.Duration
		}
		since, note := sinceFirstUse(s, c, annotationRefreshTokenFirstUsed, c.Client.RefreshToken, snowv1.HorizonRefreshToken, lifespan)
		s.firstUsed[annotationRefreshTokenFirstUsed] = note
		setHorizon(st, snowv1.HorizonRefreshToken, since.Add(lifespan), fmt.Sprintf(
			"spec.refreshToken.lifespan (%s) from when snowauth first used the refresh token, %s; it may be older: key %s of the credentials Secret says the end exactly",
			lifespan, since.Format(time.RFC3339), snowv1.CredentialsKeyRefreshTokenExpiresAt))
	}
	if max := s.conn.Spec.ClientSecretMaxAge; max != nil {
		since, note := sinceFirstUse(s, c, annotationClientSecretFirstUsed, c.Client.ClientSecret, snowv1.HorizonClientSecret, max.Duration)
		s.firstUsed[annotationClientSecretFirstUsed] = note
		setHorizon(st, snowv1.HorizonClientSecret, since.Add(max.Duration), fmt.Sprintf(
			"spec.clientSecretMaxAge (%s) from when snowauth first used the client secret, %s", max.Duration, since.Format(time.RFC3339)))
	} else {
		dropHorizon(st, snowv1.HorizonClientSecret)
	}
}

// keepFirstUsed sets the first-used annotations on the token Secret being
// written: the ones the latest credentials read decided, else the ones it
// carries.
func keepFirstUsed(s *scope, secret, desired *corev1.Secret) {
	for _, k := range firstUsedAnnotations {
		v, decided := s.firstUsed[k]
		if s.firstUsed == nil {
			v, decided = secret.Annotations[k], true
		}
		if decided && v != "" {
			desired.Annotations[k] = v
		}
	}
}

// horizonStatus records the horizons status itself tells (the
// AuthorizationCode grant's refresh token, a provided key's certificate)
// and says whether one is near: CredentialExpiring's reason and message.
// It runs at every reconcile, and wakes the next one when a horizon enters
// its warning.
func (r *ServiceNowConnectionReconciler) horizonStatus(s *scope) (reason, message string) {
	st := &s.conn.Status
	if s.conn.Spec.GrantType == snowv1.GrantAuthorizationCode {
		if st.RefreshTokenExpiresAt != nil {
			setHorizon(st, snowv1.HorizonRefreshToken, st.RefreshTokenExpiresAt.Time,
				"the authorization time plus spec.authorizationCode.refreshTokenLifespan")
		} else {
			dropHorizon(st, snowv1.HorizonRefreshToken)
		}
	}
	if at := certificateHorizon(st.JWTBearer, s.now); at != nil && s.conn.Spec.GrantType == snowv1.GrantJWTBearer {
		setHorizon(st, snowv1.HorizonCertificate, *at, "the notAfter of the certificate snowauth made for the provided key (status.jwtBearer)")
	} else {
		dropHorizon(st, snowv1.HorizonCertificate)
	}
	warn := defaultExpiryWarning
	if w := s.conn.Spec.ExpiryWarning; w != nil {
		warn = w.Duration
	}
	h, next := nearestHorizon(st.Horizons, s.now, warn)
	if !next.IsZero() {
		s.wake = append(s.wake, next)
	}
	if h == nil {
		return "", ""
	}
	return string(h.Kind) + "ExpiresSoon", horizonMessage(s.conn, *h, s.now)
}

// certificateHorizon is when the certificate an instance may still hold
// expires: after a renewal, the previous one's end while it is ahead (the
// instance's verifier map may still hold it), else the current one's.
func certificateHorizon(j *snowv1.JWTBearerStatus, now time.Time) *time.Time {
	switch {
	case j == nil || j.CertificateNotAfter == nil:
		return nil
	case j.PreviousCertificateNotAfter != nil && j.PreviousCertificateNotAfter.After(now):
		return &j.PreviousCertificateNotAfter.Time
	}
	return &j.CertificateNotAfter.Time
}

// nearestHorizon returns the earliest horizon within warn of now (or
// past), and when the first one not yet warned of enters its warning
// (zero if none).
func nearestHorizon(hs []snowv1.Horizon, now time.Time, warn time.Duration) (*snowv1.Horizon, time.Time) {
	var near *snowv1.Horizon
	var next time.Time
	for i := range hs {
		h := &hs[i]
		switch warnAt := h.At.Add(-warn); {
		case !now.Before(warnAt):
			if near == nil || h.At.Time.Before(near.At.Time) {
				near = h
			}
		case next.IsZero() || warnAt.Before(next):
			next = warnAt
		}
	}
	return near, next
}

// horizonMessage says which credential ends when, how snowauth knows, and
// what a person does about it.
func horizonMessage(conn *snowv1.ServiceNowConnection, h snowv1.Horizon, now time.Time) string {
	when := "stops working at"
	if !now.Before(h.At.Time) {
		when = "stopped working at"
	}
	at := h.At.UTC().Format(time.RFC3339)
	creds := conn.Spec.CredentialsSecretRef.Name
	switch {
	case h.Kind == snowv1.HorizonClientSecret:
		return fmt.Sprintf("the client secret reaches spec.clientSecretMaxAge at %s (%s): make a new one at the instance and put it in key client_secret of Secret %s",
			at, h.Source, creds)
	case h.Kind == snowv1.HorizonCertificate:
		return fmt.Sprintf("the certificate for the provided key %s %s: put the current one (kubectl servicenow jwt-certificate %s) in the instance's JWT verifier map; once the instance holds it, this clears when the old one ends",
			when, at, conn.Name)
	case conn.Spec.GrantType == snowv1.GrantAuthorizationCode:
		return fmt.Sprintf("the refresh token %s %s (%s): authorise again (kubectl servicenow authorize %s)", when, at, h.Source, conn.Name)
	}
	return fmt.Sprintf("the refresh token %s %s (%s): put a new one in key refresh_token of Secret %s", when, at, h.Source, creds)
}
