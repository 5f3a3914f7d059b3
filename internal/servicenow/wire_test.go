package servicenow_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// recordingTransport keeps a copy of every request it forwards.
type recordingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	sent []sentRequest
}

type sentRequest struct {
	method, path, query string
	header              http.Header
	form                url.Values
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s := sentRequest{method: req.Method, path: req.URL.Path, query: req.URL.RawQuery, header: req.Header.Clone()}
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		s.form, _ = url.ParseQuery(string(body))
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(strings.NewReader(string(body)))
	}
	r.mu.Lock()
	r.sent = append(r.sent, s)
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func TestTokenRequestsOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		name     string
		grant    servicenow.Grant
		wantForm url.Values
	}{
		{
			name:  "sends the password grant as a form with the credentials in the body",
			grant: servicenow.GrantPassword,
			wantForm: url.Values{"grant_type": {"password"}, "client_id": {clientID}, "client_secret": {canaryClientSecret},
				"username": {username}, "password": {canaryPassword}, "scope": {"useraccount"}},
		},
		{
			name:  "sends the refresh token grant as a form with the credentials in the body",
			grant: servicenow.GrantRefreshToken,
			wantForm: url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "client_secret": {canaryClientSecret},
				// A refresh keeps the original grant's scope: oauth2 sends
				// none, as RFC 6749 allows.
				"refresh_token": {"from-the-simulator"}},
		},
		{
			name:  "sends the client credentials grant as a form with the credentials in the body",
			grant: servicenow.GrantClientCredentials,
			wantForm: url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {canaryClientSecret},
				"scope": {"useraccount"}},
		},
		{
			name:  "sends the authorization code grant as a form with the code, redirect URI, verifier and credentials in the body",
			grant: servicenow.GrantAuthorizationCode,
			// No scope: the code carries what the user granted.
			wantForm: url.Values{"grant_type": {"authorization_code"}, "client_id": {clientID},
				"client_secret": {canaryClientSecret}, "code": {"from-the-simulator"}, "redirect_uri": {redirectURI},
				"code_verifier": {canaryVerifier}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			rec := &recordingTransport{}
			f := newFixture(t, simulator.Options{}, func(o *servicenow.Options) { o.Transport = rec })
			rec.next = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.sim.CertPool()}}
			req := f.request(tc.grant)
			req.Scopes = []string{"useraccount"}
			if tc.grant == servicenow.GrantRefreshToken {
				req.Credentials.RefreshToken = issueRefreshToken(t, f)
				tc.wantForm.Set("refresh_token", req.Credentials.RefreshToken)
			}
			if tc.grant == servicenow.GrantAuthorizationCode {
				req.Credentials.Code = authorize(t, f, canaryVerifier)
				tc.wantForm.Set("code", req.Credentials.Code)
			}

			_, err := f.client.Token(context.Background(), req)

			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(rec.sent).To(HaveLen(1), "exactly one request per token")
			sent := rec.sent[0]
			g.Expect(sent.method).To(Equal(http.MethodPost))
			g.Expect(sent.path).To(Equal("/oauth_token.do"))
			g.Expect(sent.query).To(BeEmpty())
			g.Expect(sent.header.Get("Content-Type")).To(Equal("application/x-www-form-urlencoded"))
			g.Expect(sent.header.Get("Accept")).To(Equal("application/json"))
			g.Expect(sent.header.Get("User-Agent")).To(Equal("snowauth"))
			g.Expect(sent.header.Get("Authorization")).To(BeEmpty(), "no HTTP Basic client authentication")
			g.Expect(sent.form).To(Equal(tc.wantForm))
		})
	}
}
