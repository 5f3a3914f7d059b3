package simulator

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"time"
)

// AuthorizationCodeLifespan is how long a code from oauth_auth.do can be
// exchanged, on the simulator's clock (Advance moves it). Codes are also
// single-use.
const AuthorizationCodeLifespan = 60 * time.Second

// Messages of the 400 pages oauth_auth.do shows instead of redirecting. The
// state message is ServiceNow's (glide.oauth.state.parameter.required).
const (
	msgInvalidClient       = "Invalid client_id"
	msgInvalidRedirect     = "Invalid redirect_uri"
	msgInvalidResponseType = "Invalid response_type: only code is supported"
	msgMissingState        = "Missing State parameter in request"
	msgInvalidChallenge    = "Invalid code_challenge or code_challenge_method: only S256 is supported"
	msgInvalidAction       = "Invalid action: allow or deny"
	msgLoginFailed         = "User name or password invalid"
)

// authCode is an authorization code handed to a redirect URI, bound to
// everything the token request must repeat.
type authCode struct {
	clientID, redirectURI, username string
	challenge                       string // S256 code_challenge, "" without PKCE
	expiry                          time.Time
	used                            bool
}

// authRequest is what oauth_auth.do is asked, in the query of the GET and in
// the hidden fields of the login form's POST.
type authRequest struct {
	responseType, clientID, redirectURI, state, challenge, challengeMethod string
}

func authRequestFrom(v url.Values) authRequest {
	return authRequest{
		responseType:    v.Get("response_type"),
		clientID:        v.Get("client_id"),
		redirectURI:     v.Get("redirect_uri"),
		state:           v.Get("state"),
		challenge:       v.Get("code_challenge"),
		challengeMethod: v.Get("code_challenge_method"),
	}
}

type hiddenField struct{ Name, Value string }

// hidden lists the request's parameters as the login form carries them.
func (a authRequest) hidden() []hiddenField {
	var out []hiddenField
	for _, f := range []hiddenField{
		{"response_type", a.responseType}, {"client_id", a.clientID}, {"redirect_uri", a.redirectURI},
		{"state", a.state}, {"code_challenge", a.challenge}, {"code_challenge_method", a.challengeMethod},
	} {
		if f.Value != "" {
			out = append(out, f)
		}
	}
	return out
}

// checkAuthRequest returns the OAuth client of a request oauth_auth.do may
// act on, or the message of the 400 page that refuses it. The client and
// the redirect URI come first: until both are known good, nothing may be
// sent to the redirect URI (no open redirect). Callers hold mu.
func (s *Simulator) checkAuthRequest(a authRequest) (OAuthClient, string) {
	c, ok := s.clients[a.clientID]
	switch {
	case !ok || c.Inactive:
		return OAuthClient{}, msgInvalidClient
	case c.RedirectURL == "" || a.redirectURI != c.RedirectURL:
		return OAuthClient{}, msgInvalidRedirect
	case a.responseType != "code":
		return OAuthClient{}, msgInvalidResponseType
	case a.state == "":
		return OAuthClient{}, msgMissingState
	case a.challenge != "" && a.challengeMethod != "S256",
		a.challenge == "" && a.challengeMethod != "":
		return OAuthClient{}, msgInvalidChallenge
	}
	return c, ""
}

// serveAuth is /oauth_auth.do, ServiceNow's login and consent page for the
// authorization code grant. GET shows the login form for a valid request;
// POST (the form: the request's parameters plus user_name, user_password and
// action=allow|deny) logs in and redirects to the registered Redirect URL
// with code and state, or with error=access_denied and state when the user
// denies. A wrong password shows the form again. A request with an unknown
// client, another redirect URI, another response_type, no state or a PKCE
// method other than S256 gets a 400 text page and never a redirect.
func (s *Simulator) serveAuth(w http.ResponseWriter, r *http.Request) {
	var params url.Values
	switch r.Method {
	case http.MethodGet:
		params = r.URL.Query()
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			writeAuthError(w, "Invalid form")
			return
		}
		params = r.PostForm
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")

	a := authRequestFrom(params)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, msg := s.checkAuthRequest(a); msg != "" {
		writeAuthError(w, msg)
		return
	}
	if r.Method == http.MethodGet {
		writeLoginPage(w, a, "", "")
		return
	}

	action := params.Get("action")
	if action != "allow" && action != "deny" {
		writeAuthError(w, msgInvalidAction)
		return
	}
	name := params.Get("user_name")
	u := s.activeUser(name)
	if u == nil || !equal(u.Password, params.Get("user_password")) {
		writeLoginPage(w, a, msgLoginFailed, name)
		return
	}
	if action == "deny" {
		redirectWith(w, a.redirectURI, url.Values{"error": {"access_denied"}, "state": {a.state}})
		return
	}
	now := s.now()
	for k, c := range s.codes {
		if !now.Before(c.expiry) {
			delete(s.codes, k) // an expired code fails like an unknown one
		}
	}
	code := randomHex(20)
	s.codes[code] = &authCode{clientID: a.clientID, redirectURI: a.redirectURI, username: u.Username,
		challenge: a.challenge, expiry: now.Add(AuthorizationCodeLifespan)}
	redirectWith(w, a.redirectURI, url.Values{"code": {code}, "state": {a.state}})
}

// redeemCode checks the authorization_code grant's code, redirect_uri and
// code_verifier for client c and returns the user the code was issued to.
// A code is spent the moment it is presented by an authenticated client,
// whether or not the rest of the request is right. Callers hold mu.
func (s *Simulator) redeemCode(c OAuthClient, form url.Values, now time.Time) (username string, ok bool) {
	code := s.codes[form.Get("code")]
	if code == nil || code.used {
		return "", false
	}
	code.used = true
	switch {
	case !now.Before(code.expiry), code.clientID != c.ID, code.redirectURI != form.Get("redirect_uri"):
		return "", false
	case code.challenge != "" && !equal(code.challenge, s256(form.Get("code_verifier"))):
		return "", false
	case s.activeUser(code.username) == nil:
		return "", false
	}
	return code.username, true
}

func s256(verifier string) string {
	if verifier == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// redirectWith answers 302 to the registered redirect URI with params added
// to its query.
func redirectWith(w http.ResponseWriter, redirectURI string, params url.Values) {
	u, err := url.Parse(redirectURI)
	if err != nil || !u.IsAbs() {
		writeAuthError(w, msgInvalidRedirect)
		return
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusFound)
}

func writeAuthError(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(msg + "\n"))
}

// loginPage is the simulator's stand-in for ServiceNow's login and consent
// pages. Login reads its form: keep the hidden inputs and the form tag in
// this exact shape.
var loginPage = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Log in | ServiceNow</title></head>
<body>
<h1>Log in</h1>
{{if .Error}}<p class="error">{{.Error}}</p>
{{end}}<p>The application {{.ClientID}} asks for access to your ServiceNow account.</p>
<form method="post" action="/oauth_auth.do">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<label>User name <input type="text" name="user_name" value="{{.Username}}" autocomplete="username"></label>
<label>Password <input type="password" name="user_password" autocomplete="current-password"></label>
<button type="submit" name="action" value="allow">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
</body></html>
`))

func writeLoginPage(w http.ResponseWriter, a authRequest, errMsg, username string) {
	w.Header().Set("Content-Type", "text/html;charset=UTF-8")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(http.StatusOK)
	_ = loginPage.Execute(w, map[string]any{
		"Error": errMsg, "ClientID": a.clientID, "Hidden": a.hidden(), "Username": username,
	})
}
