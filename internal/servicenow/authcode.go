package servicenow

import (
	"net/url"

	"golang.org/x/oauth2"
)

// AuthCodeURL returns the address of the instance's login and consent page
// (oauth_auth.do) for the authorization code grant with PKCE:
//
//	<base>/oauth_auth.do?client_id=…&code_challenge=…&code_challenge_method=S256&redirect_uri=…&response_type=code&state=…
//
// Every value is query-encoded. instance comes from Client.ResolveInstance. state is
// mandatory on new instances (glide.oauth.state.parameter.required), and
// redirectURI must be exactly the OAuth client's registered Redirect URL and
// the Credentials.RedirectURI of the later code exchange. codeChallenge is
// S256Challenge of the verifier the exchange will send; when it is empty
// neither code_challenge nor code_challenge_method is added (snowauth always
// sends one). An empty state or redirectURI is left out, as golang.org/x/oauth2
// does. AuthCodeURL returns "" for the zero Instance.
//
// The URL holds no secret, but state and the challenge bind the login to one
// authorisation: do not log it.
func AuthCodeURL(instance Instance, clientID, redirectURI, state, codeChallenge string) string {
	if instance.IsZero() {
		return ""
	}
	auth := url.URL{Scheme: instance.base.Scheme, Host: instance.base.Host, Path: "/oauth_auth.do"}
	cfg := oauth2.Config{
		ClientID:    clientID,
		RedirectURL: redirectURI,
		Endpoint:    oauth2.Endpoint{AuthURL: auth.String()},
	}
	var opts []oauth2.AuthCodeOption
	if codeChallenge != "" {
		opts = append(opts,
			oauth2.SetAuthURLParam("code_challenge", codeChallenge),
			oauth2.SetAuthURLParam("code_challenge_method", "S256"))
	}
	return cfg.AuthCodeURL(state, opts...)
}

// S256Challenge returns the PKCE code challenge of verifier with method S256:
// base64url(SHA-256(verifier)) without padding (RFC 7636, section 4.2).
func S256Challenge(verifier string) string {
	return oauth2.S256ChallengeFromVerifier(verifier)
}
