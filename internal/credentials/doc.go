// Package credentials reads a ServiceNowConnection's credentials Secret and
// turns it into what a token request needs: the instance, resolved and
// allowlisted once, and the OAuth client (plus the user's password or the
// refresh token, per grant).
//
// It is the one reader of credentials Secrets: the reconciler and the
// authorization server both use it, so both trim, check and name missing
// keys the same way. It reads, it never writes, and it never caches a
// Secret. It knows nothing of scheduling or status; its errors are *Error
// (CredentialsNotFound, CredentialsInvalid) or the ServiceNow client's
// *servicenow.Error of kind InvalidInstance, all of them found before
// anything is sent to ServiceNow.
package credentials
