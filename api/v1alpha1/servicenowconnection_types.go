package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GrantType is the OAuth grant snowauth uses to obtain access tokens.
//
// Each grant names the keys it needs in the credentials Secret.
//
// +kubebuilder:validation:Enum=ClientCredentials;Password;RefreshToken;AuthorizationCode;JWTBearer
type GrantType string

const (
	// GrantClientCredentials uses the client_credentials grant: the OAuth
	// client acts as its OAuth Application User. Needs instance, client_id and
	// client_secret. ServiceNow returns no refresh token for this grant.
	GrantClientCredentials GrantType = "ClientCredentials"

	// GrantPassword uses the password grant with a dedicated integration user.
	// Needs instance, client_id, client_secret, username and password.
	GrantPassword GrantType = "Password"

	// GrantRefreshToken uses the refresh_token grant with a refresh token
	// obtained elsewhere. Needs instance, client_id, client_secret and
	// refresh_token. ServiceNow does not rotate or extend refresh tokens: the
	// token stops working at its issue time plus its lifespan (100 days by
	// default).
	GrantRefreshToken GrantType = "RefreshToken"

	// GrantAuthorizationCode has a person authorise once through ServiceNow's
	// login page, from the link in status.authorizationURL; snowauth keeps
	// the refresh token it receives in an operator-owned Secret and refreshes
	// with it. Needs instance, client_id and client_secret of an OAuth client
	// whose Redirect URL is snowauth's callback, and the manager's
	// authorization server (--authorization-external-url).
	GrantAuthorizationCode GrantType = "AuthorizationCode"

	// GrantJWTBearer signs a short-lived JWT assertion for a ServiceNow user
	// (urn:ietf:params:oauth:grant-type:jwt-bearer): no password and no
	// refresh token that dies after 100 days. Needs instance, client_id and
	// client_secret; the subject (spec.jwtBearer.subject, else the username
	// key); and with spec.jwtBearer.signingKey Provided, private_key.
	// ServiceNow returns no refresh token for this grant.
	GrantJWTBearer GrantType = "JWTBearer"
)

// Keys that snowauth reads from the credentials Secret.
const (
	CredentialsKeyInstance     = "instance"
	CredentialsKeyClientID     = "client_id"
	CredentialsKeyClientSecret = "client_secret"
	CredentialsKeyUsername     = "username"
	CredentialsKeyPassword     = "password"
	CredentialsKeyRefreshToken = "refresh_token"
	// CredentialsKeyRefreshTokenExpiresAt optionally says when the
	// RefreshToken grant's refresh_token stops working (RFC 3339), for
	// status.horizons; without it snowauth counts
	// spec.refreshToken.lifespan from when it first used the token.
	CredentialsKeyRefreshTokenExpiresAt = "refresh_token_expires_at"
	// CredentialsKeyPrivateKey is the PEM private key (PKCS#8, PKCS#1 or
	// SEC 1) of the JWTBearer grant with signingKey Provided;
	// CredentialsKeyKeyID optionally names it (the JWT header's kid).
	CredentialsKeyPrivateKey = "private_key"
	CredentialsKeyKeyID      = "key_id"
)

// Keys that snowauth writes to the token Secret. Applications mount the Secret
// as a volume and read access_token before each request: the kubelet updates
// the mounted files when snowauth refreshes the token.
const (
	TokenKeyAccessToken = "access_token"
	TokenKeyTokenType   = "token_type"
	TokenKeyExpiresAt   = "expires_at"
	TokenKeyInstanceURL = "instance_url"

	// Keys of the AuthorizationCode grant's Secret <name>-refresh-token,
	// which snowauth owns and applications never mount: the refresh token
	// and when it was issued, and while one is asked for, the authorization
	// link and its expiry.
	AuthorizationKeyRefreshToken = "refresh_token"
	AuthorizationKeyIssuedAt     = "issued_at"
	AuthorizationKeyURL          = "authorization_url"
	AuthorizationKeyExpiresAt    = "authorization_url_expires_at"

	// SigningKeysKey is the key of the JWTBearer grant's Secret
	// <name>-signing-keys, which snowauth owns and applications never
	// mount: the managed private keys, as JSON.
	SigningKeysKey = "keys.json"
)

// Labels and annotations snowauth owns. Users cannot set keys under the
// servicenow.snowauth.dev/ prefix or app.kubernetes.io/managed-by on the token
// Secret (admission rejects them), so the operator's own labels always win.
const (
	// LabelManagedBy marks every object the operator writes.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "snowauth"
	// LabelConnection names the ServiceNowConnection that owns an object.
	LabelConnection = "servicenow.snowauth.dev/connection"
	// AnnotationAuthorizationNonce on the refresh-token Secret records the
	// nonce of the authorization that produced it.
	AnnotationAuthorizationNonce = "servicenow.snowauth.dev/authorization-nonce"
	// AnnotationAuthorizationRequestedAt asks for a new authorization link
	// whenever its value changes (any string; `kubectl servicenow
	// authorize` writes the time). Setting it needs patch on the
	// connection; reading the link needs get on Secrets in its namespace.
	AnnotationAuthorizationRequestedAt = "servicenow.snowauth.dev/authorization-requested-at"
	// AnnotationRefreshRequestedAt asks for one immediate refresh whenever its
	// value changes (any string; `kubectl servicenow refresh` writes the time).
	AnnotationRefreshRequestedAt = "servicenow.snowauth.dev/refresh-requested-at"
	// AnnotationRevokeRequestedAt asks, whenever its value changes (any
	// string; `kubectl servicenow revoke` writes the time), that snowauth
	// revoke the access token in the token Secret at ServiceNow and put a
	// new one there at once: for a token that leaked.
	AnnotationRevokeRequestedAt = "servicenow.snowauth.dev/revoke-requested-at"

	// FinalizerRevoke is on every connection with spec.revokeOnDelete: a
	// deleted connection stays until snowauth has revoked its tokens, or
	// given up after the manager's --revoke-on-delete-timeout.
	FinalizerRevoke = "servicenow.snowauth.dev/revoke"
)

// SecretReference names a Secret in the connection's own namespace. There is no
// namespace field on purpose: a connection can only use credentials its own
// namespace already holds.
type SecretReference struct {
	// name is the name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must be a valid Secret name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name"`
}

// TokenSecretSpec shapes the Secret that snowauth writes the access token to.
type TokenSecretSpec struct {
	// name of the token Secret, in the connection's namespace. Defaults to
	// "<connection name>-token". snowauth never takes over a Secret it did not
	// create: if a Secret of that name exists without this connection as its
	// controller, the connection reports SecretConflict. It cannot be
	// "<connection name>-refresh-token", the name snowauth reserves for the
	// refresh token of the AuthorizationCode grant.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="must be a valid Secret name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name,omitempty"`

	// labels to add to the token Secret, for example to select it from other
	// tooling. Keys under servicenow.snowauth.dev/ and
	// app.kubernetes.io/managed-by are reserved for snowauth.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('servicenow.snowauth.dev/') && k != 'app.kubernetes.io/managed-by')",message="label keys under servicenow.snowauth.dev/ and the key app.kubernetes.io/managed-by are reserved for snowauth"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 317 && k.indexOf('/') <= 253 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",message="label keys must be qualified names: an optional prefix of at most 253 characters (a DNS subdomain: lower-case letters, digits, '-' and '.') and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 63 && self[k].matches('^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$'))",message="label values must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	Labels map[string]LabelValue `json:"labels,omitempty"`

	// annotations to add to the token Secret, for example for a tool that
	// copies Secrets across namespaces. Keys are qualified names, like label
	// keys; keys under servicenow.snowauth.dev/ and app.kubernetes.io/managed-by
	// are reserved for snowauth. Keys and values may total at most 261120
	// characters (255 KiB): Kubernetes allows 256 KiB of annotations on the
	// Secret, and snowauth adds its own (about 100 bytes). Kubernetes counts
	// UTF-8 bytes, so a value with non-ASCII characters takes more of its
	// limit than it does of this one.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('servicenow.snowauth.dev/') && k != 'app.kubernetes.io/managed-by')",message="annotation keys under servicenow.snowauth.dev/ and the key app.kubernetes.io/managed-by are reserved for snowauth"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 317 && k.indexOf('/') <= 253 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))",message="annotation keys must be qualified names: an optional prefix of at most 253 characters (a DNS subdomain: lower-case letters, digits, '-' and '.') and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	// +kubebuilder:validation:XValidation:rule="self.map(k, size(k) + size(self[k])).sum() <= 261120",message="annotations must total at most 261120 characters (255 KiB) of keys and values: Kubernetes limits a Secret's annotations to 256 KiB and snowauth adds its own; shorten or remove some"
	Annotations map[string]string `json:"annotations,omitempty"`

	// deletionPolicy says what happens to the token Secret when the
	// connection is deleted. Delete (the default): the Secret is owned by the
	// connection and Kubernetes deletes it with the connection. Retain: the
	// Secret carries no owner reference and stays, with its last token, until
	// someone deletes it; a connection of the same name created later adopts
	// it (snowauth adopts only a Secret labelled as snowauth's for that
	// connection).
	// +optional
	DeletionPolicy TokenSecretDeletionPolicy `json:"deletionPolicy,omitempty"`
}

// TokenSecretDeletionPolicy is Delete or Retain.
// +kubebuilder:validation:Enum=Delete;Retain
type TokenSecretDeletionPolicy string

// The token Secret deletion policies.
const (
	TokenSecretDelete TokenSecretDeletionPolicy = "Delete"
	TokenSecretRetain TokenSecretDeletionPolicy = "Retain"
)

// LabelValue is the value of a Kubernetes label: at most 63 characters.
// +kubebuilder:validation:MaxLength=63
type LabelValue string

// AuthorizationCodeSpec tunes the AuthorizationCode grant.
type AuthorizationCodeSpec struct {
	// refreshTokenLifespan is the Refresh Token Lifespan of the OAuth
	// client's registry record (ServiceNow does not say it in the token
	// response). ServiceNow never extends a refresh token: it stops working
	// this long after the authorization. Default 2400h (100 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="refreshTokenLifespan must be at least 1h"
	RefreshTokenLifespan *metav1.Duration `json:"refreshTokenLifespan,omitempty"`

	// reauthorizeBefore is how long before the refresh token stops working
	// snowauth asks a person to authorise again (condition
	// RefreshTokenExpiring, alert SnowauthReauthorizationNeeded). Default
	// 336h (14 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="reauthorizeBefore must be at least 1m"
	ReauthorizeBefore *metav1.Duration `json:"reauthorizeBefore,omitempty"`
}

// AuthorizationStatus is the AuthorizationCode grant's authorization. It
// holds no link: a link is minted when an editor asks (the
// servicenow.snowauth.dev/authorization-requested-at annotation, which
// `kubectl servicenow authorize` sets) and kept in the Secret
// linkSecretName, which only people who may read Secrets in the namespace
// can read. A link works once, and only while it is the newest.
type AuthorizationStatus struct {
	// lastHandledRequest is the value of the authorization-requested-at
	// annotation snowauth last acted on.
	// +optional
	LastHandledRequest string `json:"lastHandledRequest,omitempty"`

	// linkSecretName is the Secret holding the current link (key
	// authorization_url) while there is one.
	// +optional
	LinkSecretName string `json:"linkSecretName,omitempty"`

	// server is the authorization server's external URL the current link
	// points to; `kubectl servicenow authorize` opens no link elsewhere.
	// +optional
	Server string `json:"server,omitempty"`

	// linkID identifies the current link (a digest of its nonce, not a
	// link); empty when no link works.
	// +optional
	LinkID string `json:"linkID,omitempty"`

	// linkExpiresAt is when the current link stops working.
	// +optional
	LinkExpiresAt *metav1.Time `json:"linkExpiresAt,omitempty"`

	// completedLinkID is the link that completed the latest authorization.
	// +optional
	CompletedLinkID string `json:"completedLinkID,omitempty"`

	// authorizedBy is the ServiceNow user the refresh token belongs to
	// (user_name, as the instance's current-user API reports it with the
	// new token); empty when the instance did not say.
	// +optional
	AuthorizedBy string `json:"authorizedBy,omitempty"`

	// authorizedAt is when the latest authorization completed.
	// +optional
	AuthorizedAt *metav1.Time `json:"authorizedAt,omitempty"`

	// failedLinkID is the link whose authorization failed last, and
	// failureMessage why.
	// +optional
	FailedLinkID string `json:"failedLinkID,omitempty"`
	// +optional
	FailureMessage string `json:"failureMessage,omitempty"`
}

// PasswordSpec tunes the Password grant.
type PasswordSpec struct {
	// maxRejections is how many times in a row ServiceNow may reject the
	// password before snowauth stops sending it: ServiceNow locks an account
	// after repeated failed logins, and a wrong password retried every 15
	// minutes would lock the integration user out. snowauth then reports
	// Stalled and sends the password again only when the credentials Secret
	// or the spec changes or a refresh is requested (once per such change).
	// Default 3.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=20
	MaxRejections *int32 `json:"maxRejections,omitempty"`
}

// RefreshTokenSpec tunes the RefreshToken grant.
type RefreshTokenSpec struct {
	// lifespan is the Refresh Token Lifespan of the OAuth client's registry
	// record, which no ServiceNow response states. When the credentials
	// Secret has no refresh_token_expires_at key, snowauth counts it from
	// when it first used the refresh token: the token may be older, so it
	// may stop working sooner. Default 2400h (100 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="refreshToken.lifespan must be at least 1h"
	Lifespan *metav1.Duration `json:"lifespan,omitempty"`
}

// HorizonKind names a credential upstream of the access token.
type HorizonKind string

// The credentials whose deadlines status.horizons tracks.
const (
	// HorizonRefreshToken: the refresh token of the RefreshToken or
	// AuthorizationCode grant, which ServiceNow never extends.
	HorizonRefreshToken HorizonKind = "RefreshToken"
	// HorizonClientSecret: the client secret reaches
	// spec.clientSecretMaxAge, counted from when snowauth first used it.
	HorizonClientSecret HorizonKind = "ClientSecret"
	// HorizonCertificate: the JWTBearer grant's certificate for a provided
	// key reaches its notAfter.
	HorizonCertificate HorizonKind = "Certificate"
)

// Horizon is a deadline of a credential the access token depends on: past
// it, no new access token can be had until a person acts.
type Horizon struct {
	// kind is RefreshToken, ClientSecret or Certificate.
	// +required
	Kind HorizonKind `json:"kind"`
	// at is when the credential stops working (or, for ClientSecret, is
	// due for rotation).
	// +required
	At metav1.Time `json:"at"`
	// source says how snowauth knows: a key of the credentials Secret, or
	// a lifespan counted from a time it names.
	// +required
	// +kubebuilder:validation:MaxLength=512
	Source string `json:"source"`
}

// JWTAlgorithm is the JWS algorithm of the JWTBearer grant's assertions.
// +kubebuilder:validation:Enum=RS256;ES256
type JWTAlgorithm string

// The JWT algorithms snowauth signs with.
const (
	JWTRS256 JWTAlgorithm = "RS256"
	JWTES256 JWTAlgorithm = "ES256"
)

// SigningKeyMode says who holds the JWTBearer grant's private key.
// +kubebuilder:validation:Enum=Managed;Provided
type SigningKeyMode string

// The signing key modes.
const (
	// SigningKeyManaged: snowauth generates the key pair, keeps the private
	// key in the Secret <name>-signing-keys, publishes the public keys as a
	// JWKS document on the authorization server (status.jwtBearer.jwksURL)
	// and rotates them.
	SigningKeyManaged SigningKeyMode = "Managed"
	// SigningKeyProvided: the credentials Secret holds private_key (and
	// optionally key_id); snowauth makes a self-signed certificate for it
	// (status.jwtBearer.certificate) for ServiceNow's JWT verifier map.
	SigningKeyProvided SigningKeyMode = "Provided"
)

// JWTBearerSpec tunes the JWTBearer grant.
//
// +kubebuilder:validation:XValidation:rule="!has(self.rotation) || !has(self.signingKey) || self.signingKey == 'Managed'",message="rotation applies only to signingKey Managed: snowauth cannot rotate a key it was given"
type JWTBearerSpec struct {
	// subject is the sub claim: the value of the sys_user field the
	// instance's JWT configuration maps sub to (its User field, such as
	// User ID or Email). When empty, the credentials Secret's username key
	// is used.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Subject string `json:"subject,omitempty"`

	// audience is the aud claim. Default: the client ID, which is what
	// ServiceNow's JWT bearer configuration page asks for (iss and aud equal
	// to the client ID); set it only if your instance expects something
	// else, such as its token endpoint URL.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Audience string `json:"audience,omitempty"`

	// algorithm signs the assertions: RS256 (default, RSA 2048) or ES256
	// (ECDSA P-256). With signingKey Provided it must match the key.
	// +optional
	Algorithm JWTAlgorithm `json:"algorithm,omitempty"`

	// assertionLifetime is how long an assertion is valid (exp - iat, less
	// clockTolerance). Default 5m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('30s') && duration(self) <= duration('1h')",message="assertionLifetime must be between 30s and 1h"
	AssertionLifetime *metav1.Duration `json:"assertionLifetime,omitempty"`

	// clockTolerance dates iat and nbf this far in the past, so that an
	// instance whose clock is behind the manager's still accepts the
	// assertion: the Machine Identity Console's clock skew defaults to 0 s.
	// Default 2m.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('10m')",message="clockTolerance must be at most 10m"
	ClockTolerance *metav1.Duration `json:"clockTolerance,omitempty"`

	// signingKey is Managed (default: snowauth generates, publishes and
	// rotates the key) or Provided (the credentials Secret's private_key).
	// +optional
	SigningKey SigningKeyMode `json:"signingKey,omitempty"`

	// rotation schedules the managed keys' rotation.
	// +optional
	Rotation *KeyRotationSpec `json:"rotation,omitempty"`
}

// KeyRotationSpec schedules the rotation of managed signing keys.
//
// +kubebuilder:validation:XValidation:rule="(has(self.publishAhead) ? duration(self.publishAhead) : duration('24h')) < (has(self.every) ? duration(self.every) : duration('720h'))",message="publishAhead must be shorter than every (defaults: publishAhead 24h, every 720h)"
type KeyRotationSpec struct {
	// every is how long a key signs before the next one takes over.
	// Default 720h (30 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="rotation.every must be at least 1h"
	Every *metav1.Duration `json:"every,omitempty"`

	// publishAhead is how long a new key is published in the JWKS before
	// it signs anything. It must be longer than the JWKS cache lifespan of
	// the instance's JWT configuration, or the instance meets a key id it
	// has not fetched yet. Default 24h.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="rotation.publishAhead must be at least 1m"
	PublishAhead *metav1.Duration `json:"publishAhead,omitempty"`
}

// JWTBearerStatus is the JWTBearer grant's signing keys.
type JWTBearerStatus struct {
	// jwksURL is where the authorization server publishes this
	// connection's public keys (signingKey Managed): the JWKS URL to give
	// the instance's JWT verifier map.
	// +optional
	JWKSURL string `json:"jwksURL,omitempty"`

	// activeKeyID is the kid of the key that signs assertions now.
	// +optional
	ActiveKeyID string `json:"activeKeyID,omitempty"`

	// nextRotationTime is when the next managed key is made and published.
	// +optional
	NextRotationTime *metav1.Time `json:"nextRotationTime,omitempty"`

	// keys are the published public keys (signingKey Managed), oldest
	// first. The JWKS document is made of them.
	// +optional
	// +listType=map
	// +listMapKey=keyID
	// +kubebuilder:validation:MaxItems=4
	Keys []PublishedKey `json:"keys,omitempty"`

	// certificate is a self-signed X.509 certificate (PEM) for the provided
	// key (signingKey Provided), for an instance's JWT verifier map;
	// `kubectl servicenow jwt-certificate` prints it. certificateNotAfter
	// is when it stops being valid.
	// +optional
	Certificate string `json:"certificate,omitempty"`
	// +optional
	CertificateNotAfter *metav1.Time `json:"certificateNotAfter,omitempty"`
	// previousCertificateNotAfter is when the certificate before a renewal
	// ends: an instance's verifier map may hold it until then.
	// +optional
	PreviousCertificateNotAfter *metav1.Time `json:"previousCertificateNotAfter,omitempty"`
}

// PublishedKey is one public key in a connection's JWKS document.
type PublishedKey struct {
	// keyID is the key's kid.
	// +required
	KeyID string `json:"keyID"`
	// algorithm is RS256 or ES256.
	// +required
	Algorithm JWTAlgorithm `json:"algorithm"`
	// publicKey is the public key as a JSON Web Key (RFC 7517).
	// +required
	// +kubebuilder:validation:MaxLength=2048
	PublicKey string `json:"publicKey"`
	// publishedAt is when the key first appeared in status, and so in the
	// JWKS document.
	// +required
	PublishedAt metav1.Time `json:"publishedAt"`
	// signsFrom is when the key starts (or started) signing.
	// +optional
	SignsFrom *metav1.Time `json:"signsFrom,omitempty"`
	// retiresAt is when an older key leaves the JWKS document: after every
	// assertion it signed has expired.
	// +optional
	RetiresAt *metav1.Time `json:"retiresAt,omitempty"`
}

// ProbeSpec lists the REST paths snowauth GETs with each new token.
type ProbeSpec struct {
	// paths are up to 4 REST paths of the instance, each GET with every new
	// token: relative to the instance (no scheme or host), starting with
	// /api/, such as /api/now/table/incident?sysparm_limit=1&sysparm_fields=sys_id
	// or a scripted REST API's /api/x_acme_orders/v1/health. snowauth
	// joins them to the instance of the credentials Secret and to nothing
	// else, never follows a redirect, and sends GET only: write access
	// cannot be probed without writing. A path holds letters, digits,
	// -._~&+,;=:@/ and %XX escapes (write ^ as %5E), one ? before its
	// query, no fragment, no . or .. segment and no encoded dot, slash or
	// backslash. A Table API query (/api/now/table/<table> or
	// /api/now/v2/table/<table>) must set sysparm_limit from 1 to 10, so
	// that a probe reads a few records at most. Each probe is a request
	// against the instance's rate limits: with 30-minute tokens, about 3 per
	// path and hour.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:XValidation:rule="self.startsWith('/api/')",message="a probe path is a REST path of the instance starting with /api/, such as /api/now/table/incident?sysparm_limit=1: not a URL, another host, or a page outside the REST API"
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^(%[0-9A-Fa-f]{2}|[-A-Za-z0-9._~&+,;=:@/])*([?](%[0-9A-Fa-f]{2}|[-A-Za-z0-9._~&+,;=:@/?])*)?$')",message="a probe path holds only letters, digits, -._~&+,;=:@/ and %XX escapes, and a ? before its query: no spaces, quotes or fragment (#); escape other characters, such as ^ as %5E"
	// +kubebuilder:validation:items:XValidation:rule="!self.contains('..') && !self.split('?')[0].matches('(^|/)[.](/|$)|//|%2[eEfF]|%5[cC]')",message="a probe path must not hold .., a . segment, an empty segment (//) or an encoded dot, slash or backslash (%2E, %2F, %5C)"
	// +kubebuilder:validation:items:XValidation:rule="!self.split('?')[0].matches('^/api/now/(v[0-9]+/)?table/[^/]+$') || self.matches('[?&]sysparm_limit=([1-9]|10)(&|$)')",message="a Table API query must set sysparm_limit from 1 to 10, such as /api/now/table/incident?sysparm_limit=1, so that a probe reads a few records at most"
	Paths []string `json:"paths"`
}

// ProbeResult is how one probed path answered.
// +kubebuilder:validation:Enum=Authorized;Unauthorized;Forbidden;Failed
type ProbeResult string

// The probe results.
const (
	// ProbeAuthorized: a 2xx answer.
	ProbeAuthorized ProbeResult = "Authorized"
	// ProbeUnauthorized: 401, the instance did not accept the token there.
	ProbeUnauthorized ProbeResult = "Unauthorized"
	// ProbeForbidden: 403, such as "Missing required api access scope".
	ProbeForbidden ProbeResult = "Forbidden"
	// ProbeFailed: any other answer (404, 429, 5xx, a redirect, an HTML
	// page) or none (a timeout, a TLS or network failure).
	ProbeFailed ProbeResult = "Failed"
)

// ProbeStatus is what the latest probe found.
type ProbeStatus struct {
	// time is when the probe ran: right after the token obtained at
	// lastRefreshTime was stored.
	// +required
	Time metav1.Time `json:"time"`

	// paths holds one result per path of spec.probe.paths, in their order.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4
	Paths []ProbePathStatus `json:"paths,omitempty"`
}

// ProbePathStatus is how one probed path answered.
type ProbePathStatus struct {
	// path is the probed path, as in spec.probe.paths.
	// +required
	// +kubebuilder:validation:MaxLength=256
	Path string `json:"path"`

	// result is Authorized (2xx), Unauthorized (401), Forbidden (403) or
	// Failed (any other answer, or none).
	// +required
	Result ProbeResult `json:"result"`

	// statusCode is the HTTP status answered; absent when there was no
	// answer.
	// +optional
	StatusCode int32 `json:"statusCode,omitempty"`

	// rows is, for a Table API query, how many records the answer held (at
	// most sysparm_limit). 0 with a 2xx means the user may read no record
	// the query selects, which is how ACLs that hide records look.
	// +optional
	Rows *int32 `json:"rows,omitempty"`

	// message says what the answer means: ServiceNow's error message and
	// detail on a 401 or 403 when they are short plain text, what failed
	// otherwise. Never a response body or a token.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// rateLimit is what the answer's X-RateLimit-* headers said: present
	// only when one of the instance's inbound REST API rate limit rules
	// matched the request.
	// +optional
	RateLimit *RateLimitStatus `json:"rateLimit,omitempty"`
}

// RateLimitStatus is what an instance's X-RateLimit-* headers said about a
// request. ServiceNow sends no count of the requests left.
type RateLimitStatus struct {
	// limit is X-RateLimit-Limit: how many requests per hour the rule
	// allows the user.
	// +optional
	Limit int32 `json:"limit,omitempty"`

	// resetAt is X-RateLimit-Reset: when the rule's hourly count starts
	// again.
	// +optional
	ResetAt *metav1.Time `json:"resetAt,omitempty"`

	// rule is X-RateLimit-Rule: the sys_id of the rule (table
	// sys_rate_limit_rules).
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Rule string `json:"rule,omitempty"`
}

// ServiceNowConnectionSpec says which ServiceNow instance and OAuth client to
// use, with which grant, and where to keep the token.
//
// +kubebuilder:validation:XValidation:rule="!has(self.tokenSecret) || !has(self.tokenSecret.name) || self.tokenSecret.name != self.credentialsSecretRef.name",message="tokenSecret.name must differ from credentialsSecretRef.name: snowauth would overwrite the credentials with the token"
// +kubebuilder:validation:XValidation:rule="!has(self.authorizationCode) || self.grantType == 'AuthorizationCode'",message="authorizationCode applies only to grantType AuthorizationCode"
// +kubebuilder:validation:XValidation:rule="!has(self.jwtBearer) || self.grantType == 'JWTBearer'",message="jwtBearer applies only to grantType JWTBearer"
// +kubebuilder:validation:XValidation:rule="!has(self.refreshToken) || self.grantType == 'RefreshToken'",message="refreshToken applies only to grantType RefreshToken"
// +kubebuilder:validation:XValidation:rule="!has(self.revokeOnDelete) || !self.revokeOnDelete || !has(self.tokenSecret) || !has(self.tokenSecret.deletionPolicy) || self.tokenSecret.deletionPolicy != 'Retain'",message="revokeOnDelete cannot be combined with tokenSecret.deletionPolicy Retain: Retain keeps the token for applications after the connection goes, revokeOnDelete revokes it; choose one"
type ServiceNowConnectionSpec struct {
	// credentialsSecretRef names the Secret, in this namespace, that holds the
	// OAuth client of the ServiceNow instance: keys instance (an instance name
	// such as dev98042, or an https:// base URL), client_id and client_secret;
	// plus username and password for the Password grant, or refresh_token for
	// the RefreshToken grant. snowauth reads it and never writes it.
	// +required
	CredentialsSecretRef SecretReference `json:"credentialsSecretRef"`

	// grantType is the OAuth grant used to obtain tokens: ClientCredentials,
	// Password, RefreshToken, AuthorizationCode or JWTBearer.
	// +optional
	// +kubebuilder:default=ClientCredentials
	GrantType GrantType `json:"grantType,omitempty"`

	// scopes to request, sent space-separated as the OAuth scope parameter.
	// Leave empty for ServiceNow's default (useraccount).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[!#-\\\\[\\\\]-~]+$')",message="a scope is one word of printable characters, without spaces, quotes or backslashes"
	Scopes []string `json:"scopes,omitempty"`

	// tokenSecret shapes the Secret the access token is written to: its name
	// (default "<connection name>-token") and extra labels and annotations.
	// +optional
	TokenSecret TokenSecretSpec `json:"tokenSecret,omitzero"`

	// authorizationCode tunes the AuthorizationCode grant.
	// +optional
	AuthorizationCode *AuthorizationCodeSpec `json:"authorizationCode,omitempty"`

	// password tunes the Password grant.
	// +optional
	Password *PasswordSpec `json:"password,omitempty"`

	// jwtBearer tunes the JWTBearer grant: the subject and audience, the
	// algorithm, and who holds the signing key.
	// +optional
	JWTBearer *JWTBearerSpec `json:"jwtBearer,omitempty"`

	// refreshToken tunes the RefreshToken grant.
	// +optional
	RefreshToken *RefreshTokenSpec `json:"refreshToken,omitempty"`

	// clientSecretMaxAge, when set, is how long a client secret may be used
	// before it should be rotated, counted from when snowauth first used
	// it (ServiceNow does not say when it was made): a horizon like a
	// refresh token's end.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('24h')",message="clientSecretMaxAge must be at least 24h"
	ClientSecretMaxAge *metav1.Duration `json:"clientSecretMaxAge,omitempty"`

	// expiryWarning is how long before a credential's horizon snowauth
	// reports CredentialExpiring (status.horizons). Default 504h (3 weeks,
	// as the shipped alert SnowauthCredentialExpiring).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="expiryWarning must be at least 1h"
	ExpiryWarning *metav1.Duration `json:"expiryWarning,omitempty"`

	// probe lists REST paths the application needs. After each token
	// snowauth obtains, it GETs each with that token and reports in the
	// Authorized condition (and status.probe) whether the instance let it:
	// a token ServiceNow issued can still be refused by a REST API auth
	// scope or hidden from records by ACLs. The probe runs after the token
	// is stored and never delays or fails it.
	// +optional
	Probe *ProbeSpec `json:"probe,omitempty"`

	// refreshBefore is how long before the token expires snowauth refreshes
	// it, as a duration such as "10m". Between 1m and 24h. By default snowauth
	// refreshes when two thirds of the token's lifetime have passed (10
	// minutes before a 30-minute token expires). A value longer than the
	// token's lifetime means "refresh as early as possible".
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="refreshBefore must be between 1m and 24h"
	RefreshBefore *metav1.Duration `json:"refreshBefore,omitempty"`

	// suspend stops refreshing while true. The token Secret is kept as it is
	// (its token still expires on time), and Ready says the connection is
	// suspended.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// revokeOnDelete, when true, has snowauth revoke at ServiceNow what it
	// obtained when the connection is deleted: the access token in the token
	// Secret and, for the AuthorizationCode grant, the refresh token in
	// <name>-refresh-token (a refresh token given in the credentials Secret
	// is the giver's and is not revoked). snowauth puts the finalizer
	// servicenow.snowauth.dev/revoke on the connection, so a deleted
	// connection waits for the manager: for its revocations, retried for at
	// most the manager's --revoke-on-delete-timeout (2m) after the deletion,
	// then a Warning Event names what could not be revoked and the
	// connection goes. Uninstalling the manager first leaves such
	// connections undeletable until the finalizer is removed by hand (set
	// revokeOnDelete to false first). Cannot be combined with
	// tokenSecret.deletionPolicy Retain. Default false.
	// +optional
	RevokeOnDelete bool `json:"revokeOnDelete,omitempty"`
}

// ServiceNowConnectionStatus is what snowauth observed and did.
type ServiceNowConnectionStatus struct {
	// observedGeneration is the metadata.generation that snowauth last fully
	// handled; -1 until snowauth has looked at the connection.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is always present and True while the token Secret
	// holds a valid token; RefreshFailed (the latest token request or write
	// failed), Stalled (a person must act), Reconciling (a first token or a
	// retry is under way), RefreshTokenExpiring (AuthorizationCode: authorise
	// again soon) and CredentialExpiring (a horizon is near) are present
	// only while true; Authorized (True while every spec.probe path
	// answered the latest token with 2xx) only while spec.probe is set.
	// Each reason, and what to do about it, is listed in snowauth's README
	// under "Status and what to do".
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +kubebuilder:validation:MaxItems=10
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// reason is the one word a person acts on: the RefreshFailed reason while
	// a refresh is failing (even while the old token still works), else the
	// Ready reason. kubectl get shows it as STATUS.
	// +optional
	Reason string `json:"reason,omitempty"`

	// message goes with reason: the message of the condition it comes from.
	// kubectl get -o wide shows it.
	// +optional
	Message string `json:"message,omitempty"`

	// instanceURL is the base URL of the ServiceNow instance resolved from the
	// credentials Secret.
	// +optional
	InstanceURL string `json:"instanceURL,omitempty"`

	// tokenSecretName is the name of the Secret holding the access token.
	// +optional
	TokenSecretName string `json:"tokenSecretName,omitempty"`

	// expiresAt is when the access token in the token Secret expires.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// lastRefreshTime is when snowauth last obtained a token.
	// +optional
	LastRefreshTime *metav1.Time `json:"lastRefreshTime,omitempty"`

	// nextRefreshTime is when snowauth will next ask for a token: the planned
	// refresh, or the next retry after a failure.
	// +optional
	NextRefreshTime *metav1.Time `json:"nextRefreshTime,omitempty"`

	// consecutiveFailures counts the token requests that failed since the last
	// success. It drives the retry backoff and survives operator restarts.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// passwordRejections counts how many times in a row ServiceNow rejected
	// the password (Password grant); at spec.password.maxRejections snowauth
	// stops sending it. A token resets it.
	// +optional
	PasswordRejections int32 `json:"passwordRejections,omitempty"`

	// lastFailureTime is when the most recent token request failed.
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`

	// credentialsResourceVersion is the resourceVersion of the credentials
	// Secret that the latest token request used. When the Secret changes,
	// snowauth requests a new token at once, even while backing off.
	// +optional
	CredentialsResourceVersion string `json:"credentialsResourceVersion,omitempty"`

	// authorizationURL is always empty since 0.3.0, and goes with the next
	// API version: anyone who may read the connection could read a link
	// here. Links are minted on request and kept in a Secret
	// (status.authorization; `kubectl servicenow authorize`).
	// +optional
	AuthorizationURL string `json:"authorizationURL,omitempty"`

	// authorization is the AuthorizationCode grant's authorization: the
	// link a person asked for and who authorised.
	// +optional
	Authorization *AuthorizationStatus `json:"authorization,omitempty"`

	// refreshTokenExpiresAt is when the stored refresh token stops working
	// (AuthorizationCode grant): the authorization time plus
	// spec.authorizationCode.refreshTokenLifespan. status.horizons holds it
	// too; this field goes with the next API version.
	// +optional
	RefreshTokenExpiresAt *metav1.Time `json:"refreshTokenExpiresAt,omitempty"`

	// horizons are the deadlines of the credentials the access token
	// depends on (a refresh token's end, a certificate's notAfter, a
	// client secret's maximum age), as far as snowauth knows or is told.
	// CredentialExpiring is True within spec.expiryWarning of the first.
	// +optional
	// +listType=map
	// +listMapKey=kind
	// +kubebuilder:validation:MaxItems=3
	Horizons []Horizon `json:"horizons,omitempty"`

	// jwtBearer is the JWTBearer grant's signing keys: the JWKS URL, the
	// active and published keys, or the provided key's certificate.
	// +optional
	JWTBearer *JWTBearerStatus `json:"jwtBearer,omitempty"`

	// probe is what the latest probe of spec.probe.paths found: snowauth
	// probes after each token it obtains. Absent while spec.probe is.
	// +optional
	Probe *ProbeStatus `json:"probe,omitempty"`

	// lastHandledRefreshRequest is the value of the
	// servicenow.snowauth.dev/refresh-requested-at annotation that snowauth
	// last acted on.
	// +optional
	LastHandledRefreshRequest string `json:"lastHandledRefreshRequest,omitempty"`

	// lastHandledRevokeRequest is the value of the
	// servicenow.snowauth.dev/revoke-requested-at annotation that snowauth
	// last acted on: it revoked the access token (or found none valid to
	// revoke) and asked for a new one, with the outcome in the same status
	// write. While a revocation fails, RefreshFailed says why.
	// +optional
	LastHandledRevokeRequest string `json:"lastHandledRevokeRequest,omitempty"`
}

// ServiceNowConnection keeps a ServiceNow OAuth access token fresh in a Secret
// that applications mount.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=snc;snowconn,categories=servicenow
// The expiry is a string column: a date column in the future prints as
// <invalid> in kubectl.
//
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.reason`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Grant",type=string,JSONPath=`.spec.grantType`,priority=1
// +kubebuilder:printcolumn:name="Instance",type=string,JSONPath=`.status.instanceURL`,priority=1
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.tokenSecretName`,priority=1
// +kubebuilder:printcolumn:name="Next Refresh",type=string,JSONPath=`.status.nextRefreshTime`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:validation:XValidation:rule="has(self.spec.tokenSecret) && has(self.spec.tokenSecret.name) || self.spec.credentialsSecretRef.name != self.metadata.name + '-token'",message="the default token Secret name <connection name>-token equals credentialsSecretRef.name: set spec.tokenSecret.name or rename the credentials Secret"
// +kubebuilder:validation:XValidation:rule="has(self.spec.tokenSecret) && has(self.spec.tokenSecret.name) || size(self.metadata.name) <= 247",message="the connection name is too long for the default token Secret name <connection name>-token (253 characters at most): shorten it or set spec.tokenSecret.name"
// +kubebuilder:validation:XValidation:rule="self.spec.grantType != 'AuthorizationCode' || size(self.metadata.name) <= 239",message="the connection name is too long for the refresh-token Secret <connection name>-refresh-token (253 characters at most)"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.tokenSecret) || !has(self.spec.tokenSecret.name) || self.spec.tokenSecret.name != self.metadata.name + '-refresh-token'",message="spec.tokenSecret.name must not be <connection name>-refresh-token: snowauth reserves that Secret for the refresh token of the AuthorizationCode grant; choose another name"
// +kubebuilder:validation:XValidation:rule="self.spec.grantType != 'AuthorizationCode' || self.spec.credentialsSecretRef.name != self.metadata.name + '-refresh-token'",message="spec.credentialsSecretRef.name must not be <connection name>-refresh-token with grantType AuthorizationCode: snowauth keeps the refresh token in that Secret; rename the credentials Secret"
// +kubebuilder:validation:XValidation:rule="self.spec.grantType != 'JWTBearer' || size(self.metadata.name) <= 240",message="the connection name is too long for the signing-keys Secret <connection name>-signing-keys (253 characters at most)"
// +kubebuilder:validation:XValidation:rule="!has(self.spec.tokenSecret) || !has(self.spec.tokenSecret.name) || self.spec.tokenSecret.name != self.metadata.name + '-signing-keys'",message="spec.tokenSecret.name must not be <connection name>-signing-keys: snowauth reserves that Secret for the JWTBearer grant's managed keys; choose another name"
// +kubebuilder:validation:XValidation:rule="self.spec.grantType != 'JWTBearer' || self.spec.credentialsSecretRef.name != self.metadata.name + '-signing-keys'",message="spec.credentialsSecretRef.name must not be <connection name>-signing-keys with grantType JWTBearer: snowauth keeps its managed keys in that Secret; rename the credentials Secret"
type ServiceNowConnection struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// spec says what the connection should do.
	// +required
	Spec ServiceNowConnectionSpec `json:"spec"`

	// status is what snowauth observed.
	// +optional
	// +kubebuilder:default={"observedGeneration":-1}
	Status ServiceNowConnectionStatus `json:"status,omitzero"`
}

// ServiceNowConnectionList is a list of ServiceNowConnection.
//
// +kubebuilder:object:root=true
type ServiceNowConnectionList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []ServiceNowConnection `json:"items"`
}

// RefreshTokenSecretName is the name of the operator-owned Secret that holds
// the refresh token of the AuthorizationCode grant. Applications never mount
// it.
func (c *ServiceNowConnection) RefreshTokenSecretName() string {
	return c.Name + "-refresh-token"
}

// SigningKeysSecretName is the name of the operator-owned Secret that holds
// the JWTBearer grant's managed private keys. Applications never mount it.
func (c *ServiceNowConnection) SigningKeysSecretName() string {
	return c.Name + "-signing-keys"
}

// TokenSecretName is the name of the token Secret: spec.tokenSecret.name, or
// "<connection name>-token".
func (c *ServiceNowConnection) TokenSecretName() string {
	if c.Spec.TokenSecret.Name != "" {
		return c.Spec.TokenSecret.Name
	}
	return c.Name + "-token"
}
