package servicenow

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ProbeTimeout bounds one probe request (connect, TLS, send, wait, read)
// when the Client's own timeout is longer: a probe checks that a token
// works, and an instance that takes longer than this to answer a GET of one
// record has a problem of its own.
const ProbeTimeout = 5 * time.Second

// MaxProbeBody bounds how much of a probe's answer is read. A Table API page
// of one record (sysparm_limit=1) fits; the rest of a longer answer is
// neither read nor waited for, and the probe still counts its status.
const MaxProbeBody = 64 << 10

// maxProbePath bounds a probe path; admission allows far less.
const maxProbePath = 1024

// ProbeResult is how the instance answered a GET of one of its REST paths
// with an access token.
type ProbeResult struct {
	// StatusCode is the HTTP status answered, 0 when there was no answer.
	StatusCode int
	// Rows is the number of records in a Table API list's result array
	// (GET /api/now/table/<table> or /api/now/v2/table/<table>), and
	// TableRows says the path is one and its result array was read whole.
	// A table query that answers 200 with no rows is typical of ACLs that
	// hide every record from the user.
	Rows      int
	TableRows bool
	// RateLimit is what the answer's X-RateLimit-* headers said; zero when
	// it had none (no rate limit rule matched the request).
	RateLimit RateLimit
	// Truncated says the answer was longer than MaxProbeBody: only its
	// start was read.
	Truncated bool
}

// RateLimit is what an instance's inbound REST API rate limiting says about
// a request that matched one of its rules. ServiceNow sends three headers,
// and no count of the requests left: X-RateLimit-Limit (requests allowed
// per hour), X-RateLimit-Reset (when the hour's count resets, as a UNIX
// time) and X-RateLimit-Rule (the sys_id of the rule in
// sys_rate_limit_rules).
type RateLimit struct {
	// Limit is X-RateLimit-Limit, 0 when absent or not a positive number.
	Limit int
	// Reset is X-RateLimit-Reset, the zero time when absent or malformed.
	Reset time.Time
	// Rule is X-RateLimit-Rule when it is a sys_id (32 hex digits), else "".
	Rule string
}

// IsZero says the answer carried no rate-limit header snowauth understood.
func (r RateLimit) IsZero() bool { return r.Limit == 0 && r.Reset.IsZero() && r.Rule == "" }

// Probe GETs path (relative to the instance, such as
// /api/now/table/incident?sysparm_limit=1) with accessToken, and says how
// the instance answered: nil for a 2xx that is not an HTML page, else an
// *Error. It never follows a redirect, so the token only ever goes to the
// instance, and it refuses, without sending anything, a path that is not a
// plain /api/ path of the instance (KindInvalidRequest).
//
// Errors use the Client's kinds: KindAuthenticationFailed for 401 and 403
// (Error.StatusCode tells them apart; the message quotes ServiceNow's error
// message and detail when they are short plain text, such as "Missing
// required api access scope"), KindRateLimited for 429, KindTimeout,
// KindInstanceUnavailable, KindInstanceHibernating, KindTLSError,
// KindInvalidInstance for a redirect, KindInvalidResponse for a 2xx HTML
// page (a login or single sign-on page) and any other status. The result
// holds the status and the rate-limit headers of the answer whenever there
// was one, with or without an error.
//
// One probe takes at most ProbeTimeout (or the Client's timeout, if
// shorter) and reads at most MaxProbeBody bytes of the answer.
func (c *Client) Probe(ctx context.Context, instance Instance, accessToken, path string) (ProbeResult, error) {
	if instance.IsZero() {
		return ProbeResult{}, invalidInstance("no instance")
	}
	u, e := probeURL(instance, path)
	if e != nil {
		return ProbeResult{}, e
	}
	pc := *c
	pc.timeout = min(c.timeout, ProbeTimeout)
	ctx, cancel := pc.withTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return ProbeResult{}, newError(KindInvalidRequest, nil, "the probe path cannot be sent as a request")
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	a, e := pc.exchange(req, MaxProbeBody)
	if e != nil {
		return ProbeResult{}, e.redact([]string{accessToken})
	}
	res := ProbeResult{StatusCode: a.status, RateLimit: rateLimitOf(a.header), Truncated: a.truncated}
	if e := pc.classifyProbeAnswer(a); e != nil {
		return res, e.redact([]string{accessToken})
	}
	if isTableList(u.Path) && !a.truncated {
		var body struct {
			Result *[]json.RawMessage `json:"result"`
		}
		if json.Unmarshal(a.body, &body) == nil && body.Result != nil {
			res.Rows, res.TableRows = len(*body.Result), true
		}
	}
	return res, nil
}

// probeURL joins path to the instance's base URL, after checking that the
// result can only be a REST API path of that instance: it starts with
// /api/, holds visible ASCII only, no fragment, no backslash, no dot
// segment (.. or ., also percent-encoded) and no encoded slash, and parses
// back to the instance's own scheme and host. Messages never quote the path.
func probeURL(instance Instance, path string) (*url.URL, *Error) {
	refuse := func(why string) (*url.URL, *Error) {
		return nil, newError(KindInvalidRequest, nil, "the probe path is refused, nothing was sent: %s", why)
	}
	rawPath, _, _ := strings.Cut(path, "?")
	lowerPath := strings.ToLower(rawPath)
	switch {
	case len(path) > maxProbePath:
		return refuse("it is longer than " + strconv.Itoa(maxProbePath) + " bytes")
	case !strings.HasPrefix(path, "/api/"):
		return refuse("it does not start with /api/")
	case strings.IndexFunc(path, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
		return refuse("it holds a space, a control character or a character that is not ASCII")
	case strings.ContainsAny(path, "#\\"):
		return refuse("it holds a fragment (#) or a backslash")
	case strings.Contains(rawPath, "//"):
		return refuse("it holds an empty path segment (//)")
	case dotSegment.MatchString(rawPath), strings.Contains(lowerPath, "%2e"), strings.Contains(lowerPath, "%2f"),
		strings.Contains(lowerPath, "%5c"):
		return refuse("it holds a dot segment or an encoded dot, slash or backslash")
	}
	base := instance.URL()
	u, err := url.Parse(base.String() + path)
	if err != nil || u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil || u.Fragment != "" {
		return refuse("it does not parse as a path of the instance")
	}
	return u, nil
}

// dotSegment matches a "." or ".." path segment.
var dotSegment = regexp.MustCompile(`(^|/)\.\.?(/|$)`)

// tableList matches a Table API list: /api/now/table/<table>, or with a
// version (/api/now/v2/table/<table>), without a record's sys_id after it.
var tableList = regexp.MustCompile(`^/api/now/(v[0-9]+/)?table/[^/]+$`)

// isTableList says path (without the query) is a Table API list, whose
// answer is {"result":[…]}.
func isTableList(path string) bool { return tableList.MatchString(path) }

// IsTableList says a probe path is a Table API list query (see
// ProbeResult.Rows).
func IsTableList(path string) bool {
	p, _, _ := strings.Cut(path, "?")
	return isTableList(p)
}

// classifyProbeAnswer explains a probe's answer that is not a success, as
// classifyAnswer does for the token endpoint: nothing of the answer is
// quoted but its status, the REST API envelope's error.message and
// error.detail when they are short plain text, a redirect target's host and
// a plain content type. It returns nil for a success.
func (c *Client) classifyProbeAnswer(a *answer) *Error {
	withStatus := func(e *Error) *Error {
		e.StatusCode = a.status
		return e
	}
	switch {
	case isHibernationPage(a):
		return withStatus(newError(KindInstanceHibernating, nil,
			"the instance is hibernating (HTTP %d with the developer-instance hibernation page); "+
				"wake it from developer.servicenow.com", a.status))
	case a.status >= 200 && a.status < 300 && looksLikeHTML(a):
		return withStatus(newError(KindInvalidResponse, nil,
			"the instance answered HTTP %d with an HTML page instead of JSON "+
				"(a login, single sign-on, proxy or maintenance page?)", a.status))
	case a.status >= 200 && a.status < 300:
		return nil
	case a.status >= 300 && a.status < 400:
		return withStatus(newError(KindInvalidInstance, nil,
			"the instance redirected (HTTP %d) to %s; snowauth never follows redirects, so that the token "+
				"only ever goes to the configured instance", a.status, redirectTarget(a.header.Get("Location"))))
	}
	body := errorFields(a)
	e := &Error{StatusCode: a.status}
	switch a.status {
	case http.StatusUnauthorized:
		e.Kind = KindAuthenticationFailed
		e.setDetail(body, "the instance did not accept the token (", ")")
	case http.StatusForbidden:
		e.Kind = KindAuthenticationFailed
		e.setDetail(body, "the instance refused the request (", ")")
	default:
		c.classifyOther(a, body, e, "; it resets after ")
	}
	return e
}

// maxRateLimit bounds X-RateLimit-Limit: a rule counts requests per hour,
// and status keeps 32-bit numbers.
const maxRateLimit = 1 << 30

// rateLimitOf reads the X-RateLimit-* headers, keeping only values that
// are what ServiceNow documents them to be.
func rateLimitOf(h http.Header) RateLimit {
	var rl RateLimit
	if n, err := strconv.Atoi(strings.TrimSpace(h.Get("X-RateLimit-Limit"))); err == nil && n > 0 && n <= maxRateLimit {
		rl.Limit = n
	}
	// A UNIX time before 2001 or after 2286 is no reset time.
	if t, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64); err == nil && t >= 1e9 && t < 1e10 {
		rl.Reset = time.Unix(t, 0).UTC()
	}
	if r := strings.TrimSpace(h.Get("X-RateLimit-Rule")); sysID.MatchString(r) {
		rl.Rule = r
	}
	return rl
}

// sysID matches a ServiceNow sys_id.
var sysID = regexp.MustCompile(`^[0-9a-f]{32}$`)
