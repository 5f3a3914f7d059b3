package simulator

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// maxLoginHops bounds the redirects Login follows to reach oauth_auth.do.
const maxLoginHops = 5

var (
	loginFormAction  = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
	loginHiddenInput = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)
)

// Login plays the person in front of the browser, without one: it opens
// authURL with a GET, fills in the simulator's login form with username and
// password, presses Allow (allow) or Deny, and returns the Location the
// simulator redirected to: the redirect URI with code and state, or with
// error=access_denied and state. It does not visit that URL.
//
// authURL is the simulator's oauth_auth.do address (servicenow.AuthCodeURL),
// or an address that redirects there, such as snowauth's own authorisation
// link: Login follows redirects to this simulator's oauth_auth.do, and no
// others. client must trust the simulator's CA (CertPool); Login never lets
// it follow redirects on its own, whatever its CheckRedirect says.
//
// Login fails when the simulator refuses the request (the 400 page's text is
// in the error), or shows the login page again because the username or
// password is wrong or the user is inactive. Errors never contain the
// password.
func (s *Simulator) Login(ctx context.Context, client *http.Client, authURL, username, password string, allow bool) (*url.URL, error) {
	if client == nil {
		return nil, errors.New("simulator login: no HTTP client")
	}
	noFollow := *client
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	pageURL, page, err := s.openLoginPage(ctx, &noFollow, authURL)
	if err != nil {
		return nil, err
	}
	m := loginFormAction.FindStringSubmatch(page)
	if m == nil {
		return nil, errors.New("simulator login: the login page has no login form")
	}
	action, err := pageURL.Parse(html.UnescapeString(m[1]))
	if err != nil {
		return nil, fmt.Errorf("simulator login: the login form's action: %w", err)
	}
	form := url.Values{}
	for _, f := range loginHiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(f[1], html.UnescapeString(f[2]))
	}
	form.Set("user_name", username)
	form.Set("user_password", password)
	form.Set("action", "deny")
	if allow {
		form.Set("action", "allow")
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("simulator login: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, header, body, err := do(&noFollow, req)
	if err != nil {
		return nil, fmt.Errorf("simulator login: POST /oauth_auth.do: %w", err)
	}
	switch {
	case status >= 300 && status < 400 && header.Get("Location") != "":
		loc, err := action.Parse(header.Get("Location"))
		if err != nil {
			return nil, fmt.Errorf("simulator login: the redirect's Location: %w", err)
		}
		return loc, nil
	case status == http.StatusOK:
		return nil, fmt.Errorf("simulator login: the login page came back (%s): "+
			"wrong username or password, or an inactive user", msgLoginFailed)
	default:
		return nil, fmt.Errorf("simulator login: POST /oauth_auth.do answered HTTP %d: %s", status, excerpt(body))
	}
}

// openLoginPage GETs authURL, following redirects to this simulator's
// oauth_auth.do, and returns the login page and its URL.
func (s *Simulator) openLoginPage(ctx context.Context, client *http.Client, authURL string) (*url.URL, string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, "", fmt.Errorf("simulator login: the authorisation URL: %w", err)
	}
	for hop := 0; ; hop++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), http.NoBody)
		if err != nil {
			return nil, "", fmt.Errorf("simulator login: %w", err)
		}
		status, header, body, err := do(client, req)
		if err != nil {
			return nil, "", fmt.Errorf("simulator login: GET %s: %w", u.Path, err)
		}
		switch {
		case status == http.StatusOK && s.isOwnAuthURL(u):
			return u, body, nil
		case status >= 300 && status < 400 && hop < maxLoginHops:
			next, err := u.Parse(header.Get("Location"))
			if err != nil || !s.isOwnAuthURL(next) {
				return nil, "", fmt.Errorf("simulator login: GET %s redirected (HTTP %d) somewhere other than "+
					"the simulator's oauth_auth.do", u.Path, status)
			}
			u = next
		case status == http.StatusOK:
			return nil, "", fmt.Errorf("simulator login: GET %s answered a page that is not the simulator's "+
				"login page", u.Path)
		default:
			return nil, "", fmt.Errorf("simulator login: GET %s answered HTTP %d: %s", u.Path, status, excerpt(body))
		}
	}
}

// isOwnAuthURL reports whether u is this simulator's oauth_auth.do, under
// any name its certificate is valid for.
func (s *Simulator) isOwnAuthURL(u *url.URL) bool {
	own, err := url.Parse(s.url)
	if err != nil || u.Scheme != "https" || u.Path != "/oauth_auth.do" || u.Port() != own.Port() {
		return false
	}
	host := u.Hostname()
	if host == own.Hostname() || slices.Contains(s.hosts, host) {
		return true
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// do sends req and reads the (bounded) answer.
func do(client *http.Client, req *http.Request) (status int, header http.Header, body string, err error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, "", err
	}
	return resp.StatusCode, resp.Header, string(b), nil
}

// excerpt shortens a page for an error message.
func excerpt(body string) string {
	body = strings.Join(strings.Fields(body), " ")
	if len(body) > 200 {
		body = body[:200] + "…"
	}
	if body == "" {
		return "(empty body)"
	}
	return fmt.Sprintf("%q", body)
}
