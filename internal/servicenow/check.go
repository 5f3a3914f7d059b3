package servicenow

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// tokenCheckPath is the cheapest authenticated read: one user's sys_id.
const tokenCheckPath = "/api/now/table/sys_user?sysparm_limit=1&sysparm_fields=sys_id"

// CheckToken asks the instance whether it accepts accessToken, with one Table
// API read (GET /api/now/table/sys_user?sysparm_limit=1&sysparm_fields=sys_id).
// It returns nil when the token authenticated: a 2xx with a Table API result,
// or a 403, which means the user may not read sys_user but the token itself
// was accepted. A token the instance rejects (401 "User Not Authenticated")
// is a KindAuthenticationFailed *Error; other failures are classified as for
// Token.
func (c *Client) CheckToken(ctx context.Context, instance *url.URL, accessToken string) error {
	if err := c.checkToken(ctx, instance, accessToken); err != nil {
		return err.redact([]string{accessToken})
	}
	return nil
}

func (c *Client) checkToken(ctx context.Context, instance *url.URL, accessToken string) *Error {
	base, e := c.checkBase(instance)
	if e != nil {
		return e
	}
	if accessToken == "" {
		return newError(KindInvalidRequest, nil, "there is no access token to check")
	}
	if !isTokenString(accessToken) {
		return newError(KindInvalidRequest, nil, "the access token contains characters that cannot be sent in an HTTP header")
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint(base, tokenCheckPath), http.NoBody)
	if err != nil {
		return c.classifyTransportError(ctx, base.Host, err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	a, e := c.send(req)
	if e != nil {
		return e
	}
	switch {
	case a.status == http.StatusForbidden:
		return nil
	case a.status >= 200 && a.status < 300 && isJSON(mediaType(a.header)):
		var wire struct {
			Result json.RawMessage `json:"result"`
		}
		if json.Unmarshal(a.body, &wire) != nil || len(wire.Result) == 0 || wire.Result[0] != '[' {
			e := newError(KindInvalidResponse, nil,
				"the Table API answer (HTTP %d) is not a JSON object with a result list", a.status)
			e.StatusCode = a.status
			return e
		}
		return nil
	}
	return c.classifyAnswer(a, tableEndpoint, "")
}
