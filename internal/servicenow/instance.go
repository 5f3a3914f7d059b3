package servicenow

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// DefaultAllowedDomains are the instance domains accepted when
// Options.AllowedDomains is empty: ServiceNow's commercial cloud and its
// government cloud (GCC).
var DefaultAllowedDomains = []string{"service-now.com", "servicenowservices.com"}

// instanceDomain is where an instance name lives: dev98042 means
// https://dev98042.service-now.com.
const instanceDomain = "service-now.com"

// Instance is an instance's base URL that Client.ResolveInstance checked:
// parsed, normalised to https://host[:port] and inside the allowed domains.
// A TokenRequest carries one, so no request can reach a host that skipped
// those checks, and they run once per request rather than again in Token.
// The zero Instance is no instance; Token refuses it.
type Instance struct{ base *url.URL }

// URL returns a copy of the base URL, nil for the zero Instance.
func (i Instance) URL() *url.URL {
	if i.base == nil {
		return nil
	}
	u := *i.base
	return &u
}

// String returns the base URL, "" for the zero Instance.
func (i Instance) String() string {
	if i.base == nil {
		return ""
	}
	return i.base.String()
}

// IsZero reports whether i is the zero Instance.
func (i Instance) IsZero() bool { return i.base == nil }

// ResolveInstance turns an instance name (dev98042) or an https:// base URL
// into the base URL token requests go to. The rules are in the package
// documentation; errors are *Error with Kind KindInvalidInstance and name the
// broken rule. Messages never repeat the input, which may hold a password in
// its user information or a token in its query, only the host when it is the
// problem.
func (c *Client) ResolveInstance(instance string) (Instance, error) {
	u, err := parseInstance(instance)
	if err != nil {
		return Instance{}, err
	}
	if err := c.checkAllowed(u.Hostname()); err != nil {
		return Instance{}, err
	}
	return Instance{base: u}, nil
}

func invalidInstance(format string, args ...any) *Error {
	return newError(KindInvalidInstance, nil, "invalid instance: "+format, args...)
}

// parseInstance applies every rule except the allowlist.
func parseInstance(instance string) (*url.URL, *Error) {
	s := strings.TrimSpace(instance)
	if s == "" {
		return nil, invalidInstance("it is empty; give an instance name such as dev98042 or an https:// URL")
	}
	if !strings.Contains(s, "://") {
		if !isDNSLabel(s) {
			return nil, invalidInstance("it is neither an instance name (a single DNS label such as dev98042) " +
				"nor a URL starting with https://")
		}
		return &url.URL{Scheme: "https", Host: strings.ToLower(s) + "." + instanceDomain}, nil
	}

	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the input, so only say that it is malformed.
		return nil, invalidInstance("it is not a well-formed URL")
	}
	switch {
	case u.Scheme != "https":
		return nil, invalidInstance("the URL must use https, not %q", u.Scheme)
	case u.Opaque != "":
		return nil, invalidInstance("it is not a well-formed URL (expected https://host)")
	case u.User != nil:
		return nil, invalidInstance("the URL must not contain user information (user@ or user:password@); " +
			"credentials belong in the credentials Secret")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, invalidInstance("the URL must not contain a query (?…)")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, invalidInstance("the URL must not contain a fragment (#…)")
	case u.Path != "" && u.Path != "/":
		return nil, invalidInstance("the URL must be the instance's base URL, without a path " +
			"(oauth_token.do and the REST API live at the root)")
	case u.Host == "" || u.Hostname() == "":
		return nil, invalidInstance("the URL has no host")
	}

	host := strings.ToLower(u.Hostname())
	if err := checkHost(host); err != nil {
		return nil, err
	}
	if strings.HasSuffix(u.Host, ":") {
		return nil, invalidInstance("the URL has an empty port")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || p[0] == '0' {
			return nil, invalidInstance("the port must be a number from 1 to 65535")
		}
	}
	hostPort := host
	if strings.Contains(host, ":") { // IPv6 literal
		hostPort = "[" + host + "]"
	}
	if p := u.Port(); p != "" {
		hostPort += ":" + p
	}
	return &url.URL{Scheme: "https", Host: hostPort}, nil
}

// checkHost accepts an IP address or a DNS name made of LDH labels. Anything
// else (underscores, empty labels, a trailing dot, IPv6 zones, non-ASCII
// names that should be written in punycode) is rejected rather than guessed
// at, since the name is about to receive credentials.
func checkHost(host string) *Error {
	if net.ParseIP(host) != nil {
		return nil
	}
	if len(host) > 253 {
		return invalidInstance("the host name is longer than 253 characters")
	}
	for label := range strings.SplitSeq(host, ".") {
		if !isDNSLabel(label) {
			return invalidInstance("the host %q is not a valid DNS name "+
				"(letters, digits and hyphens between dots; use punycode for non-ASCII names)", host)
		}
	}
	return nil
}

// isDNSLabel reports whether s is a host-name label: 1 to 63 letters, digits
// and hyphens, neither starting nor ending with a hyphen.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLDH(s[i]) {
			return false
		}
	}
	return true
}

// isLDH reports whether c is a letter, a digit or a hyphen.
func isLDH(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-'
}

// normalizeAllowedDomains checks the operator's allowlist once, in NewClient,
// so that a typo there fails at start-up instead of rejecting every instance.
func normalizeAllowedDomains(domains []string) ([]string, error) {
	if len(domains) == 0 {
		domains = DefaultAllowedDomains
	}
	out := make([]string, 0, len(domains))
	for _, d := range domains {
		n := strings.ToLower(strings.TrimSpace(d))
		n = strings.TrimPrefix(n, "*.")
		n = strings.TrimPrefix(n, ".")
		if n == "" || checkHost(n) != nil {
			return nil, fmt.Errorf("allowed domain %q is not a DNS name or IP address (no scheme, port or path)", d)
		}
		// A single label ("com", "internal") would allow every host under
		// it; localhost is the one exception, for the demo and tests.
		if !strings.Contains(n, ".") && net.ParseIP(n) == nil && n != "localhost" {
			return nil, fmt.Errorf("allowed domain %q is a single label, which would allow every host under it: "+
				"name the instances' domain, e.g. service-now.com or snow.example.com", d)
		}
		out = append(out, n)
	}
	return out, nil
}

// checkAllowed accepts a host equal to an allowed entry or, for domain
// entries, under it: "service-now.com" allows "dev98042.service-now.com" but
// not "evilservice-now.com".
func (c *Client) checkAllowed(host string) *Error {
	host = strings.ToLower(host)
	for _, d := range c.allowedDomains {
		if host == d {
			return nil
		}
		if net.ParseIP(d) == nil && strings.HasSuffix(host, "."+d) {
			return nil
		}
	}
	return invalidInstance("the host %q is not in the allowed domains (%s); "+
		"ask the snowauth administrator to allow it", host, strings.Join(c.allowedDomains, ", "))
}
