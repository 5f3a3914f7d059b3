package controllers

import (
	"context"

	"github.com/snowauth/snowauth/internal/credentials"
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
// refresh token (or the code to exchange), or the signing key.
func (r *ServiceNowConnectionReconciler) addGrantCredentials(ctx context.Context, s *scope, c *credentials.Credentials) error {
	if err := r.addRefreshToken(ctx, s, c); err != nil {
		return err
	}
	return r.addSigningKey(s, c)
}
