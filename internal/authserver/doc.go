// Package authserver is snowauth's authorization server for the
// AuthorizationCode grant, and the links and hand-overs it shares with the
// manager. The server (cmd/authserver) is its own Deployment, faces the
// Internet and holds no credentials:
//
//   - the manager mints a link when an editor asks (Links.Mint) and keeps it
//     in a Secret of the connection's namespace; status names it (LinkID)
//     and never holds it;
//   - GET /authorize?state=… shows a page that names the connection and the
//     instance; POST /authorize, the person's go-ahead, binds the flow to
//     the browser (a __Host- cookie, BrowserBinding) and redirects to the
//     connection's own instance's oauth_auth.do, with PKCE;
//   - GET /callback?code=…&state=… (the Redirect URL registered at
//     ServiceNow) requires that cookie and hands the code over in a Secret
//     of the server's namespace (ReadHandover); the manager, which alone
//     holds the client secret, exchanges it and writes the outcome to the
//     connection's status, which the page then shows.
//
// It keeps no server-side sessions, so any replica can answer: the state is
// signed (HMAC-SHA256, with a key id so keys can rotate) and carries the
// connection's identity, instance, client ID, a nonce and an expiry; the
// PKCE verifier and the cookie are derived from the nonce with the same
// key. A link works only while the connection's status names it as the
// newest, and once. See ../../../shared/docs/authorization-code.md for the
// design notes.
//
// It is not a ServiceNow client (that is internal/servicenow) and it never
// writes a Secret outside its namespace.
package authserver
