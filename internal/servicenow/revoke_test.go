package servicenow_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

func TestRevokeSendsTheTokenInAFormBodyAndTheInstanceStopsAcceptingIt(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t, simulator.Options{})
	req := f.request(servicenow.GrantPassword)
	tok, err := f.client.Token(context.Background(), req)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = f.client.CurrentUser(context.Background(), f.base, tok.AccessToken)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(f.client.Revoke(context.Background(), f.base, tok.AccessToken)).To(Succeed())
	g.Expect(f.client.Revoke(context.Background(), f.base, tok.RefreshToken)).To(Succeed())

	_, err = f.client.CurrentUser(context.Background(), f.base, tok.AccessToken)
	g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindAuthenticationFailed), "the access token no longer works")
	req.Grant, req.Credentials.RefreshToken = servicenow.GrantRefreshToken, tok.RefreshToken
	_, err = f.client.Token(context.Background(), req)
	g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindAuthenticationFailed), "the refresh token no longer works")
	g.Expect(f.sim.Revocations(simulator.RevokedAccessToken)).To(Equal(1))
	g.Expect(f.sim.Revocations(simulator.RevokedRefreshToken)).To(Equal(1))
	for _, r := range f.sim.RevocationLog() {
		g.Expect(r.Method).To(Equal(http.MethodPost))
		g.Expect(r.InQuery).To(BeFalse(), "the token is in no URL a proxy could log")
	}
}

func TestRevokeFailures(t *testing.T) {
	const token = canaryAccessToken
	echo := `{"error":"invalid_request","error_description":"cannot revoke ` + token + `"}`
	cases := []struct {
		name      string
		fault     *simulator.Fault
		instance  func(f *fixture) servicenow.Instance
		token     string
		kind      servicenow.Kind
		status    int
		inMessage string
	}{
		{name: "is InstanceUnavailable on a 503", fault: &simulator.Fault{Kind: simulator.FaultServerError, Status: 503},
			kind: servicenow.KindInstanceUnavailable, status: 503, inMessage: "unavailable (HTTP 503"},
		{name: "is InstanceHibernating on the hibernation page", fault: &simulator.Fault{Kind: simulator.FaultHibernating},
			kind: servicenow.KindInstanceHibernating, status: 200, inMessage: "hibernating"},
		{name: "is RateLimited on a 429", fault: &simulator.Fault{Kind: simulator.FaultRateLimited, RetryAfter: 30 * time.Second},
			kind: servicenow.KindRateLimited, status: 429, inMessage: "rate limiting"},
		{name: "is AuthenticationFailed when the instance refuses, without echoing the token",
			fault: &simulator.Fault{Kind: simulator.FaultResponse, Status: 403, ContentType: jsonType, Body: echo},
			kind:  servicenow.KindAuthenticationFailed, status: 403, inMessage: "refused to revoke the token (HTTP 403"},
		{name: "is InvalidInstance on a 404", fault: &simulator.Fault{Kind: simulator.FaultResponse, Status: 404, ContentType: "text/html", Body: "<html>" + token + "</html>"},
			kind: servicenow.KindInvalidInstance, status: 404, inMessage: "no ServiceNow endpoint"},
		{name: "is InvalidInstance on a redirect, which is not followed", fault: &simulator.Fault{Kind: simulator.FaultRedirect},
			kind: servicenow.KindInvalidInstance, status: 307, inMessage: "sso.example.net"},
		{name: "is Timeout when the instance does not answer", fault: &simulator.Fault{Kind: simulator.FaultHang},
			kind: servicenow.KindTimeout, inMessage: "no complete answer"},
		{name: "is InstanceUnavailable on a dropped connection", fault: &simulator.Fault{Kind: simulator.FaultDropConnection},
			kind: servicenow.KindInstanceUnavailable, inMessage: "closed the connection"},
		{name: "is InvalidInstance without an instance", instance: func(*fixture) servicenow.Instance { return servicenow.Instance{} },
			kind: servicenow.KindInvalidInstance, inMessage: "no instance"},
		{name: "is InvalidRequest without a token", token: "-",
			kind: servicenow.KindInvalidRequest, inMessage: "no token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newFixture(t, simulator.Options{})
			if tc.fault != nil {
				fault := *tc.fault
				fault.Path = "/oauth_revoke_token.do"
				f.sim.SetFault(fault)
			}
			instance, tok := f.base, token
			if tc.instance != nil {
				instance = tc.instance(f)
			}
			if tc.token == "-" {
				tok = ""
			}

			err := f.client.Revoke(context.Background(), instance, tok)

			var e *servicenow.Error
			g.Expect(errors.As(err, &e)).To(BeTrue(), "want *servicenow.Error, got %T: %v", err, err)
			g.Expect(e.Kind).To(Equal(tc.kind), "error: %v", err)
			g.Expect(e.StatusCode).To(Equal(tc.status))
			g.Expect(err.Error()).To(ContainSubstring(tc.inMessage))
			expectNoSecrets(g, err, []string{token})
		})
	}
}
