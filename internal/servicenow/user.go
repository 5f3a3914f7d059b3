package servicenow

import (
	"context"
	"encoding/json"
	"net/http"
)

// User is the ServiceNow user a token acts as.
type User struct {
	// Name is user_name (the login name); SysID its sys_id.
	Name, SysID string
}

// CurrentUser asks the instance whose token accessToken is:
// GET /api/now/ui/user/current_user, which answers
// {"result":{"user_name":…,"user_sys_id":…}} (the UI API's current-user
// call, which integration platforms use to identify an authorised user).
// snowauth records the answer as who authorised a connection. A token
// without access to that API gets an error; it says nothing about the
// token's other uses.
func (c *Client) CurrentUser(ctx context.Context, instance Instance, accessToken string) (User, error) {
	if instance.IsZero() {
		return User{}, invalidInstance("no instance")
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint(instance.base, "/api/now/ui/user/current_user"), nil)
	if err != nil {
		return User{}, newError(KindInvalidRequest, err, "building the current-user request")
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	a, e := c.send(req)
	if e != nil {
		return User{}, e.redact([]string{accessToken})
	}
	var body struct {
		Result struct {
			UserName  string `json:"user_name"`
			UserSysID string `json:"user_sys_id"`
		} `json:"result"`
	}
	if a.status != http.StatusOK {
		// StatusCode tells a 401 (the token is not taken) from a 403 (a
		// REST API auth scope refuses this API).
		e := newError(KindAuthenticationFailed, nil, "the instance answered HTTP %d to the current-user request", a.status)
		e.StatusCode = a.status
		return User{}, e
	}
	if err := json.Unmarshal(a.body, &body); err != nil || body.Result.UserName == "" {
		return User{}, newError(KindInvalidResponse, nil, "the instance's current-user answer names no user")
	}
	return User{Name: cleanField(body.Result.UserName), SysID: cleanField(body.Result.UserSysID)}, nil
}
