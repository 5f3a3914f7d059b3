package controllers

import (
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/credentials"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// No lock-outs: ServiceNow locks an account after repeated failed logins,
// so a wrong password is not sent again and again. After
// spec.password.maxRejections rejections in a row the reconciler stops
// sending it (refreshTrigger asks passwordStopped) until a person changes
// something: the credentials Secret, the spec, or a refresh request, each
// of which is worth one more try.
//
// Fewer logins: a password login returns a refresh token, and later
// refreshes use it (the same access token comes back), sending the
// password again only when ServiceNow rejects the refresh token or it
// nears the end of its lifespan. The refresh token is held in memory only:
// the password stays the one durable credential, so nothing long-lived is
// written anywhere new, and a restart or a new leader logs in once more.

const defaultMaxRejections = 3

func maxRejections(conn *snowv1.ServiceNowConnection) int32 {
	if p := conn.Spec.Password; p != nil && p.MaxRejections != nil {
		return *p.MaxRejections
	}
	return defaultMaxRejections
}

// passwordStopped says snowauth has stopped sending the password.
func passwordStopped(s *scope) bool {
	return s.conn.Spec.GrantType == snowv1.GrantPassword && s.failure != nil &&
		s.failure.reason == string(servicenow.KindAuthenticationFailed) &&
		s.conn.Status.PasswordRejections >= maxRejections(s.conn)
}

// countRejection records a failed token request of the Password grant:
// one more rejection in a row, or none. At the limit no retry is planned
// and the failure says why and what to do.
func countRejection(s *scope, f *failure) {
	st := &s.conn.Status
	if s.conn.Spec.GrantType != snowv1.GrantPassword {
		return
	}
	if f.reason != string(servicenow.KindAuthenticationFailed) {
		return // a timeout or an outage says nothing about the password
	}
	st.PasswordRejections++
	if passwordStopped(s) {
		st.NextRefreshTime = nil
		f.message = bound(fmt.Sprintf("snowauth stopped sending the password after %d rejections in a row, so that ServiceNow "+
			"does not lock the account out: fix the password in the credentials Secret (or request a refresh to try once more). %s",
			st.PasswordRejections, f.message), maxConditionMessage)
	}
}

// heldRefreshUse is how long a refresh token a password login returned is
// used: ServiceNow's default lifespan (100 days, which each password login
// starts again) less a week. An instance with a shorter lifespan rejects
// it sooner, and the password is sent then.
const heldRefreshUse = defaultRefreshTokenLifespan - 7*24*time.Hour

// heldRefreshToken is one connection's refresh token from a password login,
// good for the credentials it was obtained with.
type heldRefreshToken struct {
	credentialsVersion string
	token              string
	until              time.Time
}

// heldRefreshTokens holds at most one refresh token per connection UID,
// bounded like the kept tokens.
type heldRefreshTokens struct {
	mu sync.Mutex
	m  map[types.UID]heldRefreshToken
}

func (h *heldRefreshTokens) put(uid types.UID, t heldRefreshToken) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[types.UID]heldRefreshToken{}
	}
	makeRoom(h.m, uid, func(x heldRefreshToken) time.Time { return x.until })
	h.m[uid] = t
}

// get returns uid's refresh token if it was obtained with these
// credentials and is still to be used at now.
func (h *heldRefreshTokens) get(uid types.UID, credentialsVersion string, now time.Time) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.m[uid]
	if !ok || t.credentialsVersion != credentialsVersion || !now.Before(t.until) {
		delete(h.m, uid)
		return "", false
	}
	return t.token, true
}

// any returns uid's refresh token whatever the credentials, while it is
// to be used: what a deletion revokes.
func (h *heldRefreshTokens) any(uid types.UID, now time.Time) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.m[uid]
	return t.token, ok && now.Before(t.until)
}

func (h *heldRefreshTokens) drop(uid types.UID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, uid)
}

// useHeldRefreshToken makes a Password connection's request a refresh with
// the refresh token its last password login returned, when there is one.
// The password stays in c, for requestToken to send if it is rejected.
func (r *ServiceNowConnectionReconciler) useHeldRefreshToken(s *scope, c *credentials.Credentials) {
	if s.conn.Spec.GrantType != snowv1.GrantPassword {
		return
	}
	if rt, ok := r.held.get(s.conn.UID, c.Version, s.now); ok {
		c.Grant, c.Client.RefreshToken = servicenow.GrantRefreshToken, rt
	}
}

// holdRefreshToken keeps the refresh token a successful password login
// returned.
func (r *ServiceNowConnectionReconciler) holdRefreshToken(s *scope, c *credentials.Credentials, tok *servicenow.Token, err error) {
	if err != nil || tok == nil || tok.RefreshToken == "" || c.Grant != servicenow.GrantPassword || s.conn.Spec.GrantType != snowv1.GrantPassword {
		return
	}
	r.held.put(s.conn.UID, heldRefreshToken{credentialsVersion: c.Version, token: tok.RefreshToken, until: s.now.Add(heldRefreshUse)})
}
