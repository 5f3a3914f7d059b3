package authserver

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// DefaultLinkTTL is how long a start link works. Minutes: enough to log in
// at ServiceNow, short enough that a link copied into a chat goes stale.
const DefaultLinkTTL = 30 * time.Minute

// Links makes start links (the manager, when an editor asks for one) and
// checks them (the authorization server).
type Links struct {
	// Keys signs and verifies states.
	Keys KeySource
	// ExternalURL is where people's browsers reach the authorization server,
	// e.g. https://snowauth.example.com (behind an Ingress), as
	// ParseExternalURL accepted it. A path prefix is kept: the server
	// serves under it.
	ExternalURL *url.URL
	// TTL is how long a link works; DefaultLinkTTL when zero.
	TTL time.Duration
}

// ParseExternalURL checks the authorization server's external URL: https
// (http only on a loopback address, for the demo), a host, no user name or
// password, no query or fragment; an optional path prefix is kept.
func ParseExternalURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("the authorization server's external URL %q is not an absolute URL such as https://snowauth.example.com", raw)
	}
	switch {
	case u.User != nil:
		return nil, fmt.Errorf("the authorization server's external URL must not carry a user name or password")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("the authorization server's external URL %q must not carry a query or a fragment", raw)
	case u.Scheme == "https":
	case u.Scheme == "http" && IsLoopback(u.Hostname()):
	default:
		return nil, fmt.Errorf("the authorization server's external URL %q must use https:// (http:// only on a loopback address, for a demo): "+
			"browsers carry authorization codes to it", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// IsLoopback says host is localhost or a loopback address: the one place
// an authorization server may be reached over plain http (a demo).
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RedirectURI is the callback URL, to register as the Redirect URL of the
// OAuth client at ServiceNow. It is fixed by configuration and never taken
// from a request.
func (l *Links) RedirectURI() string { return l.endpoint("callback", "") }

// Link is a start link, minted for one connection.
type Link struct {
	URL     string
	ID      string // LinkID of its nonce
	Expires time.Time
}

// Mint returns a new start link for conn, bound to its UID, to the
// credentials Secret's version and to the instance and OAuth client the
// browser is sent to.
func (l *Links) Mint(ctx context.Context, conn *snowv1.ServiceNowConnection, credentialsVersion, instance, clientID string, now time.Time) (Link, error) {
	signer, err := l.Keys.Signer(ctx)
	if err != nil {
		return Link{}, err
	}
	ttl := l.TTL
	if ttl <= 0 {
		ttl = DefaultLinkTTL
	}
	expires := now.Add(ttl).Truncate(time.Second)
	st := State{
		Namespace: conn.Namespace, Name: conn.Name, UID: string(conn.UID), CredentialsVersion: credentialsVersion,
		Instance: instance, ClientID: clientID, Nonce: NewNonce(), Expires: expires.Unix(),
	}
	return Link{URL: l.endpoint("authorize", signer.Sign(st)), ID: LinkID(st.Nonce), Expires: expires}, nil
}

// path is the server's path of an endpoint, under the external URL's
// prefix.
func (l *Links) path(name string) string {
	return l.ExternalURL.Path + "/" + name
}

func (l *Links) endpoint(name, state string) string {
	u := *l.ExternalURL
	u.Path = l.path(name)
	u.RawQuery = ""
	if state != "" {
		u.RawQuery = url.Values{"state": {state}}.Encode()
	}
	return u.String()
}

// LinkTTL is how long a link works.
func (l *Links) LinkTTL() time.Duration {
	if l.TTL > 0 {
		return l.TTL
	}
	return DefaultLinkTTL
}

// JWKSURL is where the server publishes a JWTBearer connection's public
// keys.
func (l *Links) JWKSURL(namespace, name string) string {
	return l.endpoint("jwks/"+namespace+"/"+name+".json", "")
}
