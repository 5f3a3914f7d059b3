package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/authserver"
	"github.com/snowauth/snowauth/internal/credentials"
)

// The AuthorizationCode grant: a person authorises once through the
// authorization server (internal/authserver), which stores a refresh token
// in the operator-owned Secret <name>-refresh-token; the reconciler then
// refreshes with it like the RefreshToken grant, and keeps a start link in
// status while a person must act.

// Defaults of spec.authorizationCode.
const (
	defaultRefreshTokenLifespan = 2400 * time.Hour // ServiceNow's 100 days
	defaultReauthorizeBefore    = 14 * 24 * time.Hour
)

// readRefreshToken reads the refresh-token Secret of the AuthorizationCode
// grant. It is snowauth's own (labelled), so it comes from the cache.
func (r *ServiceNowConnectionReconciler) readRefreshToken(ctx context.Context, s *scope) error {
	s.refresh = nil
	if s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode {
		return nil
	}
	refresh := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: s.conn.Namespace, Name: s.conn.RefreshTokenSecretName()}, refresh)
	if err == nil && metav1.IsControlledBy(refresh, s.conn) {
		s.refresh = refresh
	}
	return client.IgnoreNotFound(err)
}

// addRefreshToken completes an AuthorizationCode request with the stored
// refresh token; it fails when a person must act first.
func (r *ServiceNowConnectionReconciler) addRefreshToken(s *scope, c *credentials.Credentials) error {
	if s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode {
		return nil
	}
	if r.Authorization == nil {
		return needsPerson(snowv1.ReasonAuthorizationServerDisabled,
			"the AuthorizationCode grant needs the manager's authorization server: start the manager with --authorization-external-url")
	}
	if s.refresh == nil || len(s.refresh.Data[authserver.RefreshTokenKey]) == 0 {
		return needsPerson(snowv1.ReasonAuthorizationRequired,
			"nobody has authorised snowauth for this connection yet: open the link in status.authorizationURL (kubectl servicenow authorize %s)", s.conn.Name)
	}
	c.Client.RefreshToken = string(s.refresh.Data[authserver.RefreshTokenKey])
	return nil
}

// authorizationStatus keeps the AuthorizationCode grant's status current:
// refreshTokenExpiresAt, and a start link in authorizationURL while a person
// must authorise (no usable refresh token, or one that expires soon). It
// returns the RefreshTokenExpiring message, "" when the token is not close
// to expiring.
func (r *ServiceNowConnectionReconciler) authorizationStatus(s *scope) string {
	st := &s.conn.Status
	if s.conn.Spec.GrantType != snowv1.GrantAuthorizationCode || r.Authorization == nil {
		st.AuthorizationURL, st.RefreshTokenExpiresAt = "", nil
		return ""
	}
	lifespan, before := defaultRefreshTokenLifespan, defaultReauthorizeBefore
	if a := s.conn.Spec.AuthorizationCode; a != nil {
		if a.RefreshTokenLifespan != nil {
			lifespan = a.RefreshTokenLifespan.Duration
		}
		if a.ReauthorizeBefore != nil {
			before = a.ReauthorizeBefore.Duration
		}
	}
	st.RefreshTokenExpiresAt = nil
	var reauthorize string
	if s.refresh != nil {
		if issued, err := time.Parse(time.RFC3339, string(s.refresh.Data[authserver.IssuedAtKey])); err == nil {
			expires := issued.Add(lifespan)
			st.RefreshTokenExpiresAt = &metav1.Time{Time: expires}
			warnAt := expires.Add(-before)
			if s.now.Before(warnAt) {
				s.wake = append(s.wake, warnAt)
			} else {
				reauthorize = fmt.Sprintf("the refresh token stops working at %s: authorise again from the link in status.authorizationURL before then",
					expires.UTC().Format(time.RFC3339))
			}
		}
	}

	needed := reauthorize != "" || s.failure != nil &&
		(s.failure.reason == snowv1.ReasonAuthorizationRequired || s.failure.reason == snowv1.ReasonRefreshTokenRejected)
	if !needed || s.creds == nil {
		st.AuthorizationURL = ""
		return reauthorize
	}
	renew, current := r.Authorization.Current(st.AuthorizationURL, s.conn, s.creds.ResourceVersion, s.now)
	if !current {
		st.AuthorizationURL, _ = r.Authorization.StartURL(s.conn, s.creds.ResourceVersion, s.now)
		renew, _ = r.Authorization.Current(st.AuthorizationURL, s.conn, s.creds.ResourceVersion, s.now)
	}
	s.wake = append(s.wake, renew)
	return reauthorize
}
