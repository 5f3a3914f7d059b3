package servicenow

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// Revoke asks the instance to revoke token, an access token or a refresh
// token: ServiceNow marks it expired, so neither the Table API nor a
// refresh_token grant accepts it again. It sends exactly one request, waits
// at most Options.Timeout, and returns nil on a 2xx answer or an *Error of
// the usual kinds. The request needs no client authentication.
//
// ServiceNow documents the endpoint as oauth_revoke_token.do?token=<token>,
// a query parameter. Revoke sends the token as a POST form body instead
// (token=<token>, application/x-www-form-urlencoded) to
// <base>/oauth_revoke_token.do: a URL is what proxies, load balancers and
// the instance's own transaction log record, and a token in one would be
// readable there by anyone who reads those logs, for as long as they are
// kept. The instance reads request parameters from a form body as it does
// from the query (its token endpoint only accepts the body on new
// instances), but which method and answer ServiceNow documents for
// revocation is not confirmed: docs/servicenow-setup.md says how to check
// that a revocation took effect.
//
// The token appears in no error, and no URL the client builds holds it.
// What the answer's body says is not read: ServiceNow does not document
// one, and any 2xx is taken as done, except the hibernation page of a
// sleeping developer instance.
func (c *Client) Revoke(ctx context.Context, instance Instance, token string) error {
	if err := c.revoke(ctx, instance, token); err != nil {
		return err.redact([]string{token})
	}
	return nil
}

func (c *Client) revoke(ctx context.Context, instance Instance, token string) *Error {
	if instance.IsZero() {
		return invalidInstance("no instance was given")
	}
	if token == "" {
		return newError(KindInvalidRequest, nil, "no token to revoke was given")
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	body := url.Values{"token": {token}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint(instance.base, "/oauth_revoke_token.do"), strings.NewReader(body))
	if err != nil {
		return newError(KindInvalidRequest, err, "building the revocation request")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	a, e := c.send(req)
	if e != nil {
		return e
	}
	switch {
	case a.status >= 200 && a.status < 300 && !isHibernationPage(a):
		return nil
	case a.status == http.StatusUnauthorized || a.status == http.StatusForbidden || a.status == http.StatusBadRequest:
		// Revocation needs no authentication: a refusal means the
		// instance (or something in front of it) does not allow it.
		e := &Error{Kind: KindAuthenticationFailed, StatusCode: a.status}
		e.setDetail(errorFields(a), "the instance refused to revoke the token (",
			"): revoke it in System OAuth > Manage Tokens instead")
		return e
	}
	return c.classifyAnswer(a, "")
}
