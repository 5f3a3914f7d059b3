package v1alpha1

// Condition types. They follow kstatus: Ready is always present and
// normal-true; Stalled, Reconciling and the domain's failure conditions are
// abnormal-true and present only while true, so `kubectl wait
// --for=condition=Ready` and kstatus-based tools (Flux, cli-utils) read a
// connection correctly. Authorized is the one other normal-true type: it
// reports a check the user asked for (spec.probe), not the reconcile, and
// kstatus reads only Ready, Stalled and Reconciling, so its False never makes
// a connection whose token works look unhealthy. Argo CD does not use
// kstatus: it reads the Lua health check in dist/argocd (docs/gitops.md).
const (
	// ConditionReady is True while the token Secret holds an access token that
	// is valid now. Always present. Polarity: normal-true.
	ConditionReady = "Ready"

	// ConditionRefreshFailed is True while the latest token request failed. A
	// token obtained earlier may still be valid (Ready stays True until it
	// expires): this is the condition to alert on before applications notice.
	// Its reason is the failure kind. Polarity: abnormal-true.
	ConditionRefreshFailed = "RefreshFailed"

	// ConditionStalled is True while the connection cannot make progress
	// without a person: rejected credentials, a missing Secret or key, an
	// instance URL that is not allowed, a Secret name conflict. Polarity:
	// abnormal-true.
	ConditionStalled = "Stalled"

	// ConditionReconciling is True while snowauth is acquiring a first token
	// or retrying after a transient failure. Polarity: abnormal-true.
	ConditionReconciling = "Reconciling"

	// ConditionRefreshTokenExpiring is True while the stored refresh token
	// (AuthorizationCode grant) stops working within
	// spec.authorizationCode.reauthorizeBefore: a person should authorise
	// again from status.authorizationURL. Polarity: abnormal-true.
	ConditionRefreshTokenExpiring = "RefreshTokenExpiring"

	// ConditionCredentialExpiring is True while a credential the access
	// token depends on (status.horizons: a refresh token, a certificate, a
	// client secret's maximum age) reaches its horizon within
	// spec.expiryWarning, or has passed it. Its reason names the kind
	// (RefreshTokenExpiresSoon, CertificateExpiresSoon,
	// ClientSecretExpiresSoon). Polarity: abnormal-true.
	ConditionCredentialExpiring = "CredentialExpiring"
	// ConditionAuthorized says whether the latest token may do what the
	// application needs: True when every spec.probe path answered it with
	// 2xx, False when one did not (the message names the path and
	// ServiceNow's error, such as "Missing required api access scope"),
	// Unknown until a token was probed. Present only while spec.probe is
	// set. Polarity: normal-true, unlike the other types but Ready: absent
	// means "not asked", not "fine", and True carries a message of its own
	// (a table query that returned no rows, which ACLs cause). A False
	// Authorized never touches Ready, RefreshFailed or the schedule: the
	// token is valid and stays in its Secret, and only the instance's
	// configuration (scopes, roles, ACLs) can change the answer.
	ConditionAuthorized = "Authorized"
)

// Condition reasons. Failure kinds reported by the ServiceNow client
// (AuthenticationFailed, InstanceHibernating, RateLimited,
// InstanceUnavailable, Timeout, InvalidResponse, TLSError, InvalidInstance)
// are used as reasons verbatim.
const (
	// ReasonTokenValid (Ready=True): the token Secret holds a valid token.
	ReasonTokenValid = "TokenValid"

	// ReasonProgressing (Ready=False, Reconciling=True): the first token is
	// being requested.
	ReasonProgressing = "Progressing"

	// ReasonTokenExpired (Ready=False): the last token expired and no new one
	// could be obtained; see RefreshFailed for why.
	ReasonTokenExpired = "TokenExpired"

	// ReasonCredentialsNotFound (Ready=False, Stalled=True): the credentials
	// Secret does not exist. Create it; snowauth notices at once.
	ReasonCredentialsNotFound = "CredentialsNotFound"

	// ReasonCredentialsInvalid (Ready=False, Stalled=True): the credentials
	// Secret lacks a key the grant needs, or a key is empty. The message names
	// the key.
	ReasonCredentialsInvalid = "CredentialsInvalid"

	// ReasonSecretConflict (Ready=False, Stalled=True): a Secret with the
	// token Secret's name exists and is not controlled by this connection.
	// snowauth leaves it alone; delete it or set spec.tokenSecret.name.
	ReasonSecretConflict = "SecretConflict"

	// ReasonAuthorizationRequired (Ready=False, Stalled=True): the
	// AuthorizationCode grant has no usable refresh token (never authorised,
	// or ServiceNow rejected it). A person opens status.authorizationURL.
	ReasonAuthorizationRequired = "AuthorizationRequired"

	// ReasonRefreshTokenRejected (Ready=False once the access token expires,
	// Stalled=True): ServiceNow rejected the stored refresh token of the
	// AuthorizationCode grant (it expired or was revoked). A person opens
	// status.authorizationURL; snowauth does not ask again before the slow
	// retry or a new authorization.
	ReasonRefreshTokenRejected = "RefreshTokenRejected"

	// ReasonTokenSecretWriteFailed (RefreshFailed=True, Reconciling=True):
	// a token was obtained but the API server refused to write the token
	// Secret (an admission policy, a ResourceQuota, RBAC). The message
	// quotes the API server; snowauth keeps the token in memory and writes
	// it on the next try without another token request.
	ReasonTokenSecretWriteFailed = "TokenSecretWriteFailed"

	// ReasonAuthorizationServerDisabled (Ready=False, Stalled=True): the
	// AuthorizationCode grant, and the JWTBearer grant with managed keys
	// (whose JWKS it publishes), need the authorization server, which is not
	// configured (--authorization-external-url).
	ReasonAuthorizationServerDisabled = "AuthorizationServerDisabled"

	// ReasonRefreshTokenExpiresSoon (RefreshTokenExpiring=True): the refresh
	// token stops working soon; authorise again.
	ReasonRefreshTokenExpiresSoon = "RefreshTokenExpiresSoon"

	// ReasonRevocationFailed (RefreshFailed=True, Reconciling=True): a
	// revoke request (the revoke-requested-at annotation) could not revoke
	// the access token at ServiceNow; the message says why. snowauth retries
	// with backoff and asks for no new token meanwhile (ServiceNow would
	// hand back the same one). Also the reason of the Warning Events of a
	// revocation that failed.
	ReasonRevocationFailed = "RevocationFailed"

	// ReasonSuspended (Ready=False): spec.suspend is true.
	ReasonSuspended = "Suspended"

	// ReasonProbeSucceeded (Authorized=True): every spec.probe path answered
	// the latest token with 2xx.
	ReasonProbeSucceeded = "ProbeSucceeded"

	// ReasonProbePending (Authorized=Unknown): no token was probed with the
	// current spec.probe yet; the probe runs after the next token.
	ReasonProbePending = "ProbePending"

	// ReasonProbeUnauthorized (Authorized=False): a path answered 401: the
	// instance did not accept the token there (an inactive user, an API
	// that does not take OAuth tokens).
	ReasonProbeUnauthorized = "ProbeUnauthorized"

	// ReasonProbeForbidden (Authorized=False): a path answered 403, such as
	// "Missing required api access scope" (the OAuth client's REST API auth
	// scopes do not cover the API) or a refused role.
	ReasonProbeForbidden = "ProbeForbidden"

	// ReasonProbeFailed (Authorized=False): a path answered something else
	// (404, 429, 5xx, a redirect, a login page) or nothing in time.
	ReasonProbeFailed = "ProbeFailed"
)
