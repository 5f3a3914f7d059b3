package servicenow_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow"
)

func TestResolveInstance(t *testing.T) {
	client, err := servicenow.NewClient(servicenow.Options{
		AllowedDomains: append([]string{"snow.example.com", "10.1.2.3", "::1"}, servicenow.DefaultAllowedDomains...),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		instance string
		want     string // resolved URL; empty when an error is expected
		wantErr  string // part of the error message
	}{
		{name: "turns an instance name into its service-now.com URL", instance: "dev98042", want: "https://dev98042.service-now.com"},
		{name: "lower-cases an instance name", instance: "  Dev98042 ", want: "https://dev98042.service-now.com"},
		{name: "accepts a service-now.com URL with a trailing slash", instance: "https://dev98042.service-now.com/", want: "https://dev98042.service-now.com"},
		{name: "accepts a government cloud URL", instance: "https://agency.servicenowservices.com", want: "https://agency.servicenowservices.com"},
		{name: "accepts an allowlisted custom domain with a port", instance: "https://SN.snow.example.com:8443", want: "https://sn.snow.example.com:8443"},
		{name: "accepts the allowlisted domain itself", instance: "https://snow.example.com", want: "https://snow.example.com"},
		{name: "accepts an allowlisted IPv4 address", instance: "https://10.1.2.3:443", want: "https://10.1.2.3:443"},
		{name: "accepts an allowlisted IPv6 address", instance: "https://[::1]:8443", want: "https://[::1]:8443"},

		{name: "rejects an empty instance", instance: "  ", wantErr: "it is empty"},
		{name: "rejects a host name without a scheme", instance: "dev98042.service-now.com", wantErr: "neither an instance name"},
		{name: "rejects an instance name with an underscore", instance: "dev_98042", wantErr: "neither an instance name"},
		{name: "rejects an instance name starting with a hyphen", instance: "-dev", wantErr: "neither an instance name"},
		{name: "rejects plain http", instance: "http://dev98042.service-now.com", wantErr: `must use https, not "http"`},
		{name: "rejects another scheme", instance: "ftp://dev98042.service-now.com", wantErr: `must use https`},
		{name: "rejects user information without repeating it", instance: "https://admin:hunter22@dev98042.service-now.com", wantErr: "must not contain user information"},
		{name: "rejects an empty user information part", instance: "https://@dev98042.service-now.com", wantErr: "must not contain user information"},
		{name: "rejects a query", instance: "https://dev98042.service-now.com?sysparm=1", wantErr: "must not contain a query"},
		{name: "rejects an empty query", instance: "https://dev98042.service-now.com/?", wantErr: "must not contain a query"},
		{name: "rejects a fragment", instance: "https://dev98042.service-now.com/#home", wantErr: "must not contain a fragment"},
		{name: "rejects a path", instance: "https://dev98042.service-now.com/now/nav/ui", wantErr: "without a path"},
		{name: "rejects a URL without a host", instance: "https://", wantErr: "has no host"},
		{name: "rejects a URL with only a port", instance: "https://:443", wantErr: "has no host"},
		{name: "rejects a host with an empty label", instance: "https://dev98042..service-now.com", wantErr: "not a valid DNS name"},
		{name: "rejects a host with a trailing dot", instance: "https://dev98042.service-now.com.", wantErr: "not a valid DNS name"},
		{name: "rejects a non-ASCII host", instance: "https://dév.service-now.com", wantErr: "punycode"},
		{name: "rejects an empty port", instance: "https://dev98042.service-now.com:", wantErr: "empty port"},
		{name: "rejects port zero", instance: "https://dev98042.service-now.com:0", wantErr: "port must be a number from 1 to 65535"},
		{name: "rejects a port out of range", instance: "https://dev98042.service-now.com:70000", wantErr: "port must be a number from 1 to 65535"},
		{name: "rejects a malformed URL", instance: "https://dev98042.service-now.com:port", wantErr: "not a well-formed URL"},
		{name: "rejects a host outside the allowed domains", instance: "https://evil.example.org", wantErr: `host "evil.example.org" is not in the allowed domains`},
		{name: "rejects a look-alike of an allowed domain", instance: "https://evilservice-now.com", wantErr: "not in the allowed domains"},
		{name: "rejects an allowed domain used as a prefix", instance: "https://service-now.com.evil.org", wantErr: "not in the allowed domains"},
		{name: "rejects a sub-domain of an allowlisted IP address", instance: "https://x.10.1.2.3", wantErr: "not in the allowed domains"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)

			u, err := client.ResolveInstance(tc.instance)

			if tc.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(u.String()).To(Equal(tc.want))
				return
			}
			g.Expect(u.IsZero()).To(BeTrue())
			g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindInvalidInstance))
			g.Expect(err.Error()).To(ContainSubstring(tc.wantErr))
			g.Expect(err.Error()).NotTo(ContainSubstring("hunter22"))
		})
	}
}

func TestAllowedDomainsDefaultToServiceNowClouds(t *testing.T) {
	g := NewWithT(t)
	client, err := servicenow.NewClient(servicenow.Options{})
	g.Expect(err).NotTo(HaveOccurred())

	_, err = client.ResolveInstance("https://sn.example.com")
	g.Expect(err).To(MatchError(ContainSubstring("service-now.com, servicenowservices.com")))

	_, err = servicenow.NewClient(servicenow.Options{AllowedDomains: []string{"https://example.com"}})
	g.Expect(err).To(MatchError(ContainSubstring(`allowed domain "https://example.com"`)))
}

// An allowlist entry that would let credentials go to far more hosts than
// meant, or that is not a domain at all, stops the manager at start-up
// with a message that says how to write it.
func TestAllowlistEntriesThatAreNotInstanceDomainsAreRefusedAtStartUp(t *testing.T) {
	for entry, want := range map[string]string{
		"com":                      `allowed domain "com" is a single label, which would allow every host under it`,
		"*.internal":               `allowed domain "*.internal" is a single label`,
		"snow.example.com:8443":    `allowed domain "snow.example.com:8443" is not a DNS name or IP address (no scheme, port or path)`,
		"snow.example.com/path":    "is not a DNS name or IP address",
		"user@snow.example.com":    "is not a DNS name or IP address",
		"snow_example.com":         "is not a DNS name or IP address",
		"https://snow.example.com": "is not a DNS name or IP address",
	} {
		t.Run(entry, func(t *testing.T) {
			_, err := servicenow.NewClient(servicenow.Options{AllowedDomains: []string{entry}})
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(want)))
		})
	}
	for _, ok := range []string{"localhost", "10.1.2.3", "snow.example.com", "*.service-now.com"} {
		_, err := servicenow.NewClient(servicenow.Options{AllowedDomains: []string{ok}})
		NewWithT(t).Expect(err).NotTo(HaveOccurred(), "entry %q", ok)
	}
}

func TestInstanceNamesMustBeAllowlistedToo(t *testing.T) {
	g := NewWithT(t)
	client, err := servicenow.NewClient(servicenow.Options{AllowedDomains: []string{"*.snow.example.com"}})
	g.Expect(err).NotTo(HaveOccurred())

	_, err = client.ResolveInstance("dev98042")
	g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindInvalidInstance))

	u, err := client.ResolveInstance("https://a.snow.example.com")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(u.URL().Host).To(Equal("a.snow.example.com"))
}

func TestTokenRefusesARequestWithoutAResolvedInstance(t *testing.T) {
	g := NewWithT(t)
	client, err := servicenow.NewClient(servicenow.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = client.Token(t.Context(), servicenow.TokenRequest{Grant: servicenow.GrantClientCredentials,
		Credentials: servicenow.Credentials{ClientID: "id", ClientSecret: "secret"}})
	g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindInvalidInstance))
}

// FuzzResolveInstance checks the resolver's promises on any input: no panic;
// a result is a bare https URL on an allowed host that resolves to itself;
// an error is InvalidInstance with a short, single-line message.
func FuzzResolveInstance(f *testing.F) {
	client, err := servicenow.NewClient(servicenow.Options{
		AllowedDomains: append([]string{"127.0.0.1", "snow.example.com"}, servicenow.DefaultAllowedDomains...),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, instance string) {
		resolved, err := client.ResolveInstance(instance)
		if err != nil {
			var e *servicenow.Error
			if !errors.As(err, &e) || e.Kind != servicenow.KindInvalidInstance {
				t.Fatalf("ResolveInstance(%q) error %v is not InvalidInstance", instance, err)
			}
			if len(err.Error()) > 400 || strings.ContainsFunc(err.Error(), unicode.IsControl) {
				t.Fatalf("ResolveInstance(%q) error is not a short single line: %q", instance, err)
			}
			return
		}
		u := resolved.URL()
		if u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Path != "" ||
			u.Opaque != "" || u.Hostname() == "" {
			t.Fatalf("ResolveInstance(%q) = %q, not a bare https base URL", instance, u)
		}
		host := u.Hostname()
		if host != strings.ToLower(host) {
			t.Fatalf("ResolveInstance(%q) host %q is not lower case", instance, host)
		}
		allowed := host == "127.0.0.1"
		for _, d := range append([]string{"snow.example.com"}, servicenow.DefaultAllowedDomains...) {
			allowed = allowed || host == d || strings.HasSuffix(host, "."+d)
		}
		if !allowed {
			t.Fatalf("ResolveInstance(%q) = %q, outside the allowed domains", instance, u)
		}
		again, err := client.ResolveInstance(u.String())
		if err != nil || again.String() != u.String() {
			t.Fatalf("ResolveInstance(%q) = %q, which resolves to %v, %v", instance, u, again, err)
		}
	})
}
