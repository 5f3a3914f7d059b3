package controllers

import (
	"context"
	"time"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/credentials"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// Grants that need more than the credentials Secret hook in here: the
// AuthorizationCode grant (authorization.go) and the JWTBearer grant's keys
// (jwtbearer.go).

// grantSteps gathers what the connection's grant keeps besides the
// credentials: the AuthorizationCode grant's refresh token, link and
// hand-over; the JWTBearer grant's managed signing keys, rotated.
func (r *ServiceNowConnectionReconciler) grantSteps(ctx context.Context, s *scope) error {
	if err := r.authorize(ctx, s); err != nil {
		return err
	}
	return r.signingKeys(ctx, s)
}

// addGrantCredentials completes c with what the grant keeps elsewhere: the
// refresh token (or the code to exchange), or the signing key. It also
// records the horizons only the credentials tell.
func (r *ServiceNowConnectionReconciler) addGrantCredentials(ctx context.Context, s *scope, c *credentials.Credentials) error {
	observeHorizons(s, c)
	if err := r.addRefreshToken(ctx, s, c); err != nil {
		return err
	}
	r.useHeldRefreshToken(s, c)
	return r.addSigningKey(s, c)
}

// requestToken makes the token request (two, when a Password connection's
// held refresh token is rejected and the password is sent instead), records
// each in the metrics, and lets the grant handle the answer.
func (r *ServiceNowConnectionReconciler) requestToken(ctx context.Context, s *scope, c *credentials.Credentials) (*servicenow.Token, error) {
	tok, err := r.sendTokenRequest(ctx, s, c)
	if s.conn.Spec.GrantType == snowv1.GrantPassword && c.Grant == servicenow.GrantRefreshToken &&
		servicenow.KindOf(err) == servicenow.KindAuthenticationFailed {
		r.held.drop(s.conn.UID)
		c.Grant = servicenow.GrantPassword
		tok, err = r.sendTokenRequest(ctx, s, c)
	}
	r.holdRefreshToken(s, c, tok, err)
	return tok, r.afterTokenRequest(ctx, s, c, tok, err)
}

func (r *ServiceNowConnectionReconciler) sendTokenRequest(ctx context.Context, s *scope, c *credentials.Credentials) (*servicenow.Token, error) {
	started := time.Now()
	tok, err := r.Tokens.Token(ctx, servicenow.TokenRequest{
		Instance: c.Instance, Grant: c.Grant, Scopes: s.conn.Spec.Scopes, Credentials: c.Client,
	})
	observeTokenRequest(string(c.Grant), time.Since(started), classify(err))
	return tok, err
}
