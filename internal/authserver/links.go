package authserver

import (
	"net/url"
	"time"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// DefaultLinkTTL is how long a start link works. Minutes: enough to log in
// at ServiceNow, short enough that a link copied into a chat goes stale.
const DefaultLinkTTL = 30 * time.Minute

// renewWithin is how close to its expiry a start link in status is
// replaced, so a person who opens it has time to log in.
const renewWithin = 10 * time.Minute

// Links makes and checks start links. The reconciler puts them in
// status.authorizationURL; the Server accepts them.
type Links struct {
	Signer *Signer
	// ExternalURL is where people's browsers reach the authorization server,
	// e.g. https://snowauth.example.com (behind an Ingress).
	ExternalURL *url.URL
	// TTL is how long a link works; DefaultLinkTTL when zero.
	TTL time.Duration
}

// RedirectURI is the callback URL, to register as the Redirect URL of the
// OAuth client at ServiceNow. It is fixed by configuration and never taken
// from a request.
func (l *Links) RedirectURI() string { return l.endpoint("callback", "") }

// StartURL returns a new start link for conn, bound to its UID and to the
// credentials Secret's version, and when it expires.
func (l *Links) StartURL(conn *snowv1.ServiceNowConnection, credentialsVersion string, now time.Time) (string, time.Time) {
	ttl := l.TTL
	if ttl <= 0 {
		ttl = DefaultLinkTTL
	}
	expires := now.Add(ttl).Truncate(time.Second)
	st := State{
		Namespace: conn.Namespace, Name: conn.Name, UID: string(conn.UID),
		CredentialsVersion: credentialsVersion, Nonce: NewNonce(), Expires: expires.Unix(),
	}
	return l.endpoint("authorize", l.Signer.Sign(st)), expires
}

// Current reports whether link is a start link for conn and these
// credentials that still works for a while; if not, the reconciler makes a
// new one. It returns when the link should be renewed.
func (l *Links) Current(link string, conn *snowv1.ServiceNowConnection, credentialsVersion string, now time.Time) (time.Time, bool) {
	u, err := url.Parse(link)
	if err != nil || link == "" {
		return time.Time{}, false
	}
	st, err := l.Signer.Verify(u.Query().Get("state"), now)
	if err != nil || st.UID != string(conn.UID) || st.CredentialsVersion != credentialsVersion {
		return time.Time{}, false
	}
	renew := time.Unix(st.Expires, 0).Add(-renewWithin)
	return renew, now.Before(renew)
}

func (l *Links) endpoint(path, state string) string {
	u := l.ExternalURL.JoinPath(path)
	u.RawQuery = ""
	if state != "" {
		u.RawQuery = url.Values{"state": {state}}.Encode()
	}
	return u.String()
}
