package simulator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"strings"
	"time"
)

// deniedBody is what ServiceNow answers, with 401, to every rejected token
// request: bad client secret, bad password, expired or revoked refresh token,
// inactive client, disabled grant, even a JSON body.
const deniedBody = `{"error_description":"access_denied","error":"server_error"}`

// notAuthenticatedBody is the REST API's 401 envelope for a missing, invalid
// or expired bearer token.
const notAuthenticatedBody = `{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}`

const jsonContentType = "application/json;charset=UTF-8"

type token struct {
	value    string
	refresh  bool
	clientID string
	username string
	expiry   time.Time
}

func (t *token) valid(now time.Time) bool { return t != nil && now.Before(t.expiry) }

// sessionKey identifies the tokens ServiceNow keeps per OAuth client and
// user (oauth_credential records). Client credentials tokens act as the
// application user but are kept apart from that user's password-grant tokens.
type sessionKey struct {
	clientID, username string
	clientCredentials  bool
}

type session struct {
	access, refresh *token
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
}

// serveToken is POST /oauth_token.do. Its reuse rules follow ServiceNow's
// documentation and KB0791140:
//   - while the client+user's access token is valid, every grant returns that
//     same token with its expiry pushed out by a full lifespan;
//   - a password grant also extends the current refresh token, or issues one;
//   - a refresh_token grant returns the same refresh token string and never
//     extends it, so it dies at issue + lifespan (100 days by default);
//   - client_credentials returns no refresh token;
//   - authorization_code redeems a code from oauth_auth.do (see redeemCode)
//     and always issues a new refresh token (now + lifespan), which becomes
//     the client+user's current one; earlier ones stay valid until they
//     expire;
//   - jwt-bearer verifies an assertion (see serveJWTBearer) and returns the
//     client+user's access token like a password grant, but no refresh
//     token;
//   - expires_in is the lifespan minus one second (1799 for 30 minutes).
func (s *Simulator) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" || credentialsInQuery(r) {
		writeDenied(w)
		return
	}
	form := r.PostForm
	grant := form.Get("grant_type")
	if grant == GrantJWTBearer {
		// It must not hold mu while it fetches a JWKS.
		s.serveJWTBearer(w, r)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	c, ok := s.clients[form.Get("client_id")]
	if !ok || c.Inactive || !equal(c.Secret, form.Get("client_secret")) {
		writeDenied(w)
		return
	}
	if !c.accepts(grant) {
		writeDenied(w)
		return
	}

	var access, refresh *token
	switch grant {
	case GrantPassword:
		u := s.activeUser(form.Get("username"))
		if u == nil || !equal(u.Password, form.Get("password")) {
			writeDenied(w)
			return
		}
		sess := s.session(sessionKey{clientID: c.ID, username: u.Username})
		access = s.currentAccess(sess, c, u.Username, now)
		refresh = s.currentRefresh(sess, c, u.Username, now)
	case GrantRefreshToken:
		rt := s.tokens[form.Get("refresh_token")]
		if !rt.valid(now) || !rt.refresh || rt.clientID != c.ID || s.activeUser(rt.username) == nil {
			writeDenied(w)
			return
		}
		sess := s.session(sessionKey{clientID: c.ID, username: rt.username})
		access = s.currentAccess(sess, c, rt.username, now)
		refresh = rt
	case GrantClientCredentials:
		u := s.activeUser(c.ApplicationUser)
		if !s.ccEnabled || u == nil {
			writeDenied(w)
			return
		}
		sess := s.session(sessionKey{clientID: c.ID, username: u.Username, clientCredentials: true})
		access = s.currentAccess(sess, c, u.Username, now)
	case GrantAuthorizationCode:
		username, ok := s.redeemCode(c, form, now)
		if !ok {
			writeDenied(w)
			return
		}
		sess := s.session(sessionKey{clientID: c.ID, username: username})
		access = s.currentAccess(sess, c, username, now)
		sess.refresh = s.newToken(true, c.ID, username, now.Add(s.lifespans(c).refresh))
		refresh = sess.refresh
	default:
		// Unknown grants are rejected like everything else.
		writeDenied(w)
		return
	}
	s.writeToken(w, c, access, refresh)
}

// writeToken answers a successful token request; refresh may be nil.
// Callers hold mu.
func (s *Simulator) writeToken(w http.ResponseWriter, c OAuthClient, access, refresh *token) {
	resp := tokenResponse{
		AccessToken: access.value,
		Scope:       "useraccount",
		TokenType:   "Bearer",
		ExpiresIn:   max(int64(s.lifespans(c).access/time.Second)-1, 1),
	}
	if refresh != nil {
		resp.RefreshToken = refresh.value
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

// credentialsInQuery reports OAuth parameters in the URL, which new
// instances refuse (glide.oauth.allow.parameters.in.post.body.only).
func credentialsInQuery(r *http.Request) bool {
	q := r.URL.Query()
	for _, k := range []string{"client_id", "client_secret", "grant_type", "username", "password", "refresh_token",
		"code", "code_verifier", "assertion"} {
		if q.Has(k) {
			return true
		}
	}
	return false
}

type lifespans struct{ access, refresh time.Duration }

func (s *Simulator) lifespans(c OAuthClient) lifespans {
	return lifespans{
		access:  orDefault(c.AccessTokenLifespan, s.accessLifespan),
		refresh: orDefault(c.RefreshTokenLifespan, s.refreshLifespan),
	}
}

// activeUser returns the active user called username, or nil. Callers hold mu.
func (s *Simulator) activeUser(username string) *user {
	u, ok := s.users[username]
	if !ok || u.Inactive {
		return nil
	}
	return u
}

func (s *Simulator) session(k sessionKey) *session {
	sess, ok := s.sessions[k]
	if !ok {
		sess = &session{}
		s.sessions[k] = sess
	}
	return sess
}

// currentAccess returns the session's access token with its expiry pushed
// out, or a new one if it has expired or was revoked.
func (s *Simulator) currentAccess(sess *session, c OAuthClient, username string, now time.Time) *token {
	return s.extendOrIssue(&sess.access, false, c.ID, username, now, now.Add(s.lifespans(c).access))
}

// currentRefresh does the same for the refresh token, for grants other than
// refresh_token (KB0791140: they extend the current refresh token).
func (s *Simulator) currentRefresh(sess *session, c OAuthClient, username string, now time.Time) *token {
	return s.extendOrIssue(&sess.refresh, true, c.ID, username, now, now.Add(s.lifespans(c).refresh))
}

// extendOrIssue moves the expiry of the token in *slot to expiry while it is
// still valid at now, and otherwise puts a new token there.
func (s *Simulator) extendOrIssue(slot **token, refresh bool, clientID, username string, now, expiry time.Time) *token {
	if (*slot).valid(now) {
		(*slot).expiry = expiry
		return *slot
	}
	*slot = s.newToken(refresh, clientID, username, expiry)
	return *slot
}

func (s *Simulator) newToken(refresh bool, clientID, username string, expiry time.Time) *token {
	// ServiceNow's opaque tokens are long URL-safe strings.
	b := make([]byte, 64)
	_, _ = rand.Read(b)
	t := &token{value: base64.RawURLEncoding.EncodeToString(b), refresh: refresh,
		clientID: clientID, username: username, expiry: expiry}
	s.tokens[t.value] = t
	return t
}

// revoke marks a token expired, and says whether it was valid. Callers
// hold mu.
func (s *Simulator) revoke(value string) bool {
	if t, ok := s.tokens[value]; ok && t.valid(s.now()) {
		t.expiry = s.now()
		return true
	}
	return false
}

// serveRevoke is /oauth_revoke_token.do: GET with ?token=… (as ServiceNow's
// documentation shows it) or POST with token in the query or a form body.
// No authentication; the token is marked expired, so refreshing with it or
// calling the Table API with it fails from then on; the answer (200, no
// body) does not say whether it existed.
func (s *Simulator) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	revoked := s.revoke(r.FormValue("token"))
	s.mu.Unlock()
	if i, ok := r.Context().Value(revocationKey{}).(int); ok && revoked {
		s.updateRevocation(i, func(rr *RevocationRecord) { rr.Revoked = true })
	}
	w.WriteHeader(http.StatusOK)
}

func writeDenied(w http.ResponseWriter) {
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(deniedBody))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// equal compares secrets in constant time, as a real server must.
func equal(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// serveCurrentUser is GET /api/now/ui/user/current_user: the user a valid
// bearer token belongs to, as {"result":{"user_name", "user_sys_id",
// "user_display_name"}}.
func (s *Simulator) serveCurrentUser(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.bearerUser(w, r)
	if u == nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": map[string]string{
		"user_name": u.Username, "user_sys_id": u.sysID, "user_display_name": u.Username,
	}})
}

// bearerUser is the active user a request's valid access token belongs to.
// Without one it answers the 401 "User Not Authenticated" envelope and
// returns nil. s.mu must be held.
func (s *Simulator) bearerUser(w http.ResponseWriter, r *http.Request) *user {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	t := s.tokens[bearer]
	if !ok || !t.valid(s.now()) || t.refresh {
		t = nil
	}
	var u *user
	if t != nil {
		u = s.activeUser(t.username)
	}
	if u == nil {
		w.Header().Set("Content-Type", jsonContentType)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(notAuthenticatedBody))
	}
	return u
}
