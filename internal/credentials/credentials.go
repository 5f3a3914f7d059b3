package credentials

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// Resolver checks an instance name or URL against the operator's rules and
// allowlist; *servicenow.Client implements it.
type Resolver interface {
	ResolveInstance(instance string) (servicenow.Instance, error)
}

// Error is a problem with the credentials Secret that a person must fix.
// Its message names the Secret and the key, never a value.
type Error struct {
	// Reason is snowv1.ReasonCredentialsNotFound or
	// snowv1.ReasonCredentialsInvalid.
	Reason  string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Credentials is what a token request is made from.
type Credentials struct {
	// Instance is resolved and allowlisted.
	Instance servicenow.Instance
	// Grant is the OAuth grant the connection's grant type sends. The
	// AuthorizationCode grant refreshes (GrantRefreshToken) with a refresh
	// token from its own Secret, which the caller adds.
	Grant servicenow.Grant
	// Client holds the values of the keys the grant needs.
	Client servicenow.Credentials
	// Version is the credentials Secret's resourceVersion.
	Version string
	// RefreshTokenExpiresAt is the refresh_token_expires_at key (the
	// RefreshToken grant), when the Secret has it.
	RefreshTokenExpiresAt *time.Time
}

// Get reads conn's credentials Secret from r, which should be an uncached
// reader: snowauth keeps no Secret it does not own in memory. It returns
// (nil, nil) when the Secret does not exist.
func Get(ctx context.Context, r client.Reader, conn *snowv1.ServiceNowConnection) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.Get(ctx, types.NamespacedName{Namespace: conn.Namespace, Name: conn.Spec.CredentialsSecretRef.Name}, secret)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return secret, nil
}

// Parse checks that secret (nil: it does not exist) holds every key conn's
// grant needs, and resolves the instance with resolver. Nothing is sent
// anywhere.
func Parse(conn *snowv1.ServiceNowConnection, secret *corev1.Secret, resolver Resolver) (*Credentials, error) {
	name := conn.Spec.CredentialsSecretRef.Name
	if secret == nil {
		return nil, &Error{Reason: snowv1.ReasonCredentialsNotFound,
			Message: fmt.Sprintf("credentials Secret %s not found in namespace %s", name, conn.Namespace)}
	}
	grant, keys := grantFor(conn)
	values := make(map[string]string, len(keys))
	for _, k := range keys {
		v, ok := secret.Data[k]
		if !ok && k == snowv1.CredentialsKeyKeyID {
			continue // optional
		}
		if !ok {
			return nil, &Error{Reason: snowv1.ReasonCredentialsInvalid,
				Message: fmt.Sprintf("credentials Secret %s has no key %q, which the %s grant needs", name, k, conn.Spec.GrantType)}
		}
		// A trailing newline is what `echo` and most editors add; it is
		// never part of an instance, ID, secret or password. Surrounding
		// spaces are never part of an instance, client ID or user name.
		s := strings.TrimRight(string(v), "\r\n")
		if k == snowv1.CredentialsKeyInstance || k == snowv1.CredentialsKeyClientID || k == snowv1.CredentialsKeyUsername {
			s = strings.TrimSpace(s)
		}
		if strings.TrimSpace(s) == "" {
			return nil, &Error{Reason: snowv1.ReasonCredentialsInvalid,
				Message: fmt.Sprintf("key %q of credentials Secret %s is empty", k, name)}
		}
		values[k] = s
	}
	instance, err := resolver.ResolveInstance(values[snowv1.CredentialsKeyInstance])
	if err != nil {
		return nil, err
	}
	c := &Credentials{
		Instance: instance,
		Grant:    grant,
		Client: servicenow.Credentials{
			ClientID:     values[snowv1.CredentialsKeyClientID],
			ClientSecret: values[snowv1.CredentialsKeyClientSecret],
			Username:     values[snowv1.CredentialsKeyUsername],
			Password:     values[snowv1.CredentialsKeyPassword],
			RefreshToken: values[snowv1.CredentialsKeyRefreshToken],
		},
		Version: secret.ResourceVersion,
	}
	if v, ok := secret.Data[snowv1.CredentialsKeyRefreshTokenExpiresAt]; ok && conn.Spec.GrantType == snowv1.GrantRefreshToken {
		at, err := time.Parse(time.RFC3339, strings.TrimSpace(string(v)))
		if err != nil {
			return nil, &Error{Reason: snowv1.ReasonCredentialsInvalid,
				Message: fmt.Sprintf("key %q of credentials Secret %s is not an RFC 3339 time such as 2027-03-01T00:00:00Z", snowv1.CredentialsKeyRefreshTokenExpiresAt, name)}
		}
		c.RefreshTokenExpiresAt = &at
	}
	if grant == servicenow.GrantJWTBearer {
		if c.Client.JWT, err = assertion(conn, values); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// grantFor maps the connection's grant type to the OAuth grant and the
// credentials Secret keys it needs (key_id is optional).
func grantFor(conn *snowv1.ServiceNowConnection) (servicenow.Grant, []string) {
	keys := []string{snowv1.CredentialsKeyInstance, snowv1.CredentialsKeyClientID, snowv1.CredentialsKeyClientSecret}
	switch conn.Spec.GrantType {
	case snowv1.GrantJWTBearer:
		j := conn.Spec.JWTBearer
		if j == nil || j.Subject == "" {
			keys = append(keys, snowv1.CredentialsKeyUsername)
		}
		if j != nil && j.SigningKey == snowv1.SigningKeyProvided {
			keys = append(keys, snowv1.CredentialsKeyPrivateKey, snowv1.CredentialsKeyKeyID)
		}
		return servicenow.GrantJWTBearer, keys
	case snowv1.GrantPassword:
		return servicenow.GrantPassword, append(keys, snowv1.CredentialsKeyUsername, snowv1.CredentialsKeyPassword)
	case snowv1.GrantRefreshToken:
		return servicenow.GrantRefreshToken, append(keys, snowv1.CredentialsKeyRefreshToken)
	case snowv1.GrantAuthorizationCode:
		// The refresh token comes from the refresh-token Secret.
		return servicenow.GrantRefreshToken, keys
	default:
		return servicenow.GrantClientCredentials, keys
	}
}
