// Package authserver is snowauth's authorization server for the
// AuthorizationCode grant: the two endpoints a person's browser meets when
// authorising snowauth at ServiceNow, once per connection.
//
//   - GET /authorize?state=… (the start link in status.authorizationURL)
//     redirects to the connection's own instance's oauth_auth.do, with PKCE.
//   - GET /callback?code=…&state=… (the Redirect URL registered at
//     ServiceNow) exchanges the code and stores the refresh token in an
//     operator-owned Secret of the connection; the reconciler takes over
//     from there.
//
// It keeps no server-side sessions, so any manager replica can answer: the
// state is signed (HMAC-SHA256) and carries the connection's identity, a
// nonce and an expiry; the PKCE verifier is derived from the nonce with the
// same key; a used nonce is recorded on the refresh-token Secret. See
// ../../../shared/docs/authorization-code.md for the design notes.
//
// It is not a ServiceNow client (that is internal/servicenow) and it never
// writes the token Secret that applications mount.
package authserver
