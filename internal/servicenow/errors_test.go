package servicenow

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	. "github.com/onsi/gomega"
)

const testSecret = "s3cr~~~t/&+ ?%#é-value"

// encodedForms are the forms of secret that scrub promises to remove.
func encodedForms(secret string) map[string]string {
	b := []byte(secret)
	return map[string]string{
		"literal":        secret,
		"query-escaped":  url.QueryEscape(secret),
		"path-escaped":   url.PathEscape(secret),
		"base64":         base64.StdEncoding.EncodeToString(b),
		"raw base64":     base64.RawStdEncoding.EncodeToString(b),
		"base64url":      base64.URLEncoding.EncodeToString(b),
		"raw base64url":  base64.RawURLEncoding.EncodeToString(b),
		"hex":            hex.EncodeToString(b),
		"upper-case hex": strings.ToUpper(hex.EncodeToString(b)),
	}
}

func TestScrubRemovesEveryEncodingOfASecret(t *testing.T) {
	for name, form := range encodedForms(testSecret) {
		t.Run("removes the "+name+" form", func(t *testing.T) {
			g := NewWithT(t)
			got := scrub("before "+form+" after", []string{testSecret})
			g.Expect(got).To(Equal("before [redacted] after"))
		})
	}
	t.Run("leaves secrets shorter than minSecretLen alone", func(t *testing.T) {
		NewWithT(t).Expect(scrub("the abc of it", []string{"abc", ""})).To(Equal("the abc of it"))
	})
	t.Run("removes every secret given", func(t *testing.T) {
		NewWithT(t).Expect(scrub("alpha bravo charlie", []string{"alpha", "charlie"})).
			To(Equal("[redacted] bravo [redacted]"))
	})
}

func TestMessagesAreBoundedAtARuneBoundary(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"cuts ASCII", strings.Repeat("a", 10_000)},
		{"cuts two-byte runes", strings.Repeat("é", 10_000)},
		{"cuts three-byte runes at any offset", "x" + strings.Repeat("€", 10_000)},
		{"cuts four-byte runes at any offset", "xy" + strings.Repeat("😀", 10_000)},
		{"replaces control characters and invalid UTF-8", "a\x00b\r\nc\x1b[31m\xff\xfe" + strings.Repeat("z", 600)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := (&Error{Kind: KindInvalidResponse, msg: tc.in}).Error()
			g.Expect(len(got)).To(BeNumerically("<=", maxMessageLen))
			g.Expect(len(got)).To(BeNumerically(">", maxMessageLen-8), "cuts no more than it must")
			g.Expect(utf8.ValidString(got)).To(BeTrue())
			g.Expect(strings.ContainsFunc(got, func(r rune) bool { return !unicode.IsPrint(r) })).To(BeFalse(), "%q", got)
			g.Expect(got).To(HaveSuffix("…"))
		})
	}
	t.Run("leaves a short message alone", func(t *testing.T) {
		NewWithT(t).Expect((&Error{msg: "the instance is unavailable (HTTP 503)"}).Error()).
			To(Equal("the instance is unavailable (HTTP 503)"))
	})
}

func TestErrorFieldsAreShownOnlyWhenShortAndPlain(t *testing.T) {
	long := strings.Repeat("a", maxFieldLen+1)
	for _, tc := range []struct {
		name              string
		body              errorBody
		wantDetail        string
		wantCode, wantDsc string
	}{
		{"shows ServiceNow's usual rejection", errorBody{code: "server_error", desc: "access_denied"},
			`HTTP 401, error "server_error", error_description "access_denied"`, "server_error", "access_denied"},
		{"shows punctuation that carries no escape", errorBody{code: "invalid_grant", desc: "Token expired (see: KB0123456); try again/later, it's fine"},
			`HTTP 401, error "invalid_grant", error_description "Token expired (see: KB0123456); try again/later, it's fine"`,
			"invalid_grant", "Token expired (see: KB0123456); try again/later, it's fine"},
		{"trims surrounding spaces", errorBody{code: "server_error", desc: "  access_denied  "},
			`HTTP 401, error "server_error", error_description "access_denied"`, "server_error", "access_denied"},
		{"says nothing of an empty description", errorBody{code: "server_error"},
			`HTTP 401, error "server_error"`, "server_error", ""},
		{"says nothing of a description of spaces", errorBody{code: "server_error", desc: "   "},
			`HTTP 401, error "server_error"`, "server_error", ""},
		{"calls a code with capitals unrecognised", errorBody{code: "Server_Error"},
			"HTTP 401, an unrecognised error code", "", ""},
		{"calls a code with a digit unrecognised", errorBody{code: "error1"}, "HTTP 401, an unrecognised error code", "", ""},
		{"calls a code over 64 bytes unrecognised", errorBody{code: strings.Repeat("a", 65)}, "HTTP 401, an unrecognised error code", "", ""},
		{"keeps a code of 64 bytes", errorBody{code: strings.Repeat("a", 64)}, `HTTP 401, error "` + strings.Repeat("a", 64) + `"`, strings.Repeat("a", 64), ""},
		{"keeps a description of 200 bytes", errorBody{code: "x", desc: long[1:]},
			`HTTP 401, error "x", error_description "` + long[1:] + `"`, "x", long[1:]},
		{"omits a description over 200 bytes", errorBody{code: "x", desc: long},
			`HTTP 401, error "x", a description was omitted (long or not plain text)`, "x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			code, desc, detail := tc.body.render(401, nil)
			g.Expect(detail).To(Equal(tc.wantDetail))
			g.Expect(code).To(Equal(tc.wantCode))
			g.Expect(desc).To(Equal(tc.wantDsc))
		})
	}
	for _, c := range []string{"%", `\`, "&", "#", "<", `"`, "\x00", "\t", "\n", "\x7f", "é", "\u202e", "[", "{", "=", "+", "*", "@", "!", "?", "|", "~", "`", ">", "$"} {
		t.Run(fmt.Sprintf("omits a description with %q", c), func(t *testing.T) {
			g := NewWithT(t)
			_, desc, detail := errorBody{code: "server_error", desc: "access" + c + "denied"}.render(401, nil)
			g.Expect(desc).To(BeEmpty())
			g.Expect(detail).To(Equal(`HTTP 401, error "server_error", a description was omitted (long or not plain text)`))
		})
	}
	t.Run("shows a description once the secret in it is redacted", func(t *testing.T) {
		g := NewWithT(t)
		_, desc, _ := errorBody{code: "server_error", desc: "bad secret " + testSecret}.render(401, []string{testSecret})
		g.Expect(desc).To(Equal("bad secret [redacted]"))
	})
	t.Run("judges a description after redaction, so a secret cannot make it long", func(t *testing.T) {
		g := NewWithT(t)
		short := "abcd" // 4 bytes become 10
		_, desc, _ := errorBody{code: "x", desc: strings.Repeat(short+" ", 40)}.render(401, []string{short})
		g.Expect(desc).To(BeEmpty(), "240 bytes once redacted")
	})
	t.Run("labels the REST API envelope's fields", func(t *testing.T) {
		g := NewWithT(t)
		code, desc, detail := errorBody{envelope: true, code: "User Not Authenticated",
			desc: "Required to provide Auth information"}.render(401, nil)
		g.Expect(detail).To(Equal(`HTTP 401, error "User Not Authenticated", detail "Required to provide Auth information"`))
		g.Expect(code).To(Equal("User Not Authenticated"))
		g.Expect(desc).To(Equal("Required to provide Auth information"))
	})
	t.Run("omits an envelope message that is not plain text", func(t *testing.T) {
		g := NewWithT(t)
		code, _, detail := errorBody{envelope: true, code: "<b>User</b>"}.render(401, nil)
		g.Expect(code).To(BeEmpty())
		g.Expect(detail).To(Equal("HTTP 401, a description was omitted (long or not plain text)"))
	})
}

func TestRedirectsNameOnlyAValidHost(t *testing.T) {
	for _, tc := range []struct {
		name, location, want string
	}{
		{"names the host of an absolute URL", "https://sso.example.net/login?next=/oauth_token.do", "the host sso.example.net"},
		{"keeps the host's case, drops the port", "https://SSO.Example.NET:8443/x", "the host SSO.Example.NET"},
		{"drops user information", "https://user:pass@sso.example.net/", "the host sso.example.net"},
		{"names the host of a scheme-relative URL", "//sso.example.net/x", "the host sso.example.net"},
		{"says a path is on the instance", "/login.do?secret=x", "another path of the instance"},
		{"says nothing of a missing Location", "", "another location"},
		{"does not quote a Location with control characters", "https://sso.example.net/\x01\x1b[2J", "another location"},
		{"does not name a host over 253 bytes", "https://" + strings.Repeat("a.", 127) + "net/", "another host"},
		{"does not name a host of 60 KB", "https://" + strings.Repeat("a", 60<<10) + ".net/", "another host"},
		{"does not name a host with an underscore", "https://a_b.example.net/", "another host"},
		{"does not name a host with percent-escapes", "https://%61%62.example.net/", "another location"},
		{"does not name an IPv6 host", "https://[::1]:8443/", "another host"},
		{"does not name the scheme or opaque data", "javascript:alert(1)", "another host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(redirectTarget(tc.location)).To(Equal(tc.want))
		})
	}
}

func TestContentTypesAreNamedOnlyWhenPlain(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, want string
	}{
		{"names a plain media type without its parameters", "text/plain; charset=UTF-8", `content type "text/plain"`},
		{"says there was none", "", "no content type"},
		{"does not quote markup", "text/<script>", "an unrecognised content type"},
		{"does not quote percent-escapes", "text/%63%61", "an unrecognised content type"},
		{"does not quote a type without a subtype", "textplain", "an unrecognised content type"},
		{"does not quote a long type", "application/" + strings.Repeat("x", 100), "an unrecognised content type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(describeContentType(http.Header{"Content-Type": {tc.contentType}})).To(Equal(tc.want))
		})
	}
}

func TestTransportErrorsThatQuoteTheAnswerAreNotShown(t *testing.T) {
	c := &Client{timeout: 30 * time.Second}
	for _, tc := range []struct {
		name   string
		err    error
		want   string
		unwant string
	}{
		{"shows a plain network error", errors.New("dial tcp 127.0.0.1:443: connect: no route to host"),
			"cannot reach dev0.service-now.com: dial tcp 127.0.0.1:443: connect: no route to host", ""},
		{"shows IPv6 addresses", errors.New("dial tcp [::1]:443: connect: no route to host"),
			"dial tcp [::1]:443", ""},
		{"hides a malformed header line net/http quotes",
			fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w",
				textproto.ProtocolError(fmt.Sprintf("malformed MIME header line: %q", "Location: \x01%63%61%6e"))),
			"the error text is not shown", "%63"},
		{"hides HTTP/2 GOAWAY debug data",
			errors.New(`http2: server sent GOAWAY and closed the connection; LastStreamID=1, ErrCode=NO_ERROR, debug="c2VjcmV0"`),
			"the error text is not shown", "c2VjcmV0"},
		{"hides a long error", errors.New(strings.Repeat("a", maxTransportDetailLen+1)), "the error text is not shown", "aaaa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e := c.classifyTransportError(t.Context(), "dev0.service-now.com", tc.err)
			g.Expect(e.Error()).To(ContainSubstring(tc.want))
			if tc.unwant != "" {
				g.Expect(e.Error()).NotTo(ContainSubstring(tc.unwant))
			}
			g.Expect(errors.Is(e, tc.err)).To(BeTrue(), "the cause is still there for code")
		})
	}
}

// FuzzClassifyAnswer checks, for any status, Location, Content-Type and
// body, that the redacted message of an error answer is bounded, printable,
// and holds no encoded form of the request's secret.
func FuzzClassifyAnswer(f *testing.F) {
	forms := encodedForms(testSecret)
	f.Add(401, "", "application/json", `{"error":"server_error","error_description":"access_denied"}`)
	f.Add(401, "", "application/json", `{"error":"server_error","error_description":"`+forms["raw base64url"]+`"}`)
	f.Add(400, "", "application/json", `{"error":`+jsonQuote(testSecret)+`}`)
	f.Add(429, "", "application/json", `{"error":{"message":"`+forms["hex"]+`","detail":"x"}}`)
	f.Add(503, "", "text/html", "<html>"+forms["query-escaped"]+"</html>")
	f.Add(302, "https://"+forms["raw base64url"]+".example.net/?"+forms["path-escaped"], "", "")
	f.Add(302, "https://sso.example.net/"+strings.Repeat("A", 60<<10), "", "")
	f.Add(200, "", "text/"+forms["raw base64url"], "x")
	f.Add(200, "", "application/json", `{"error":"invalid_grant","error_description":"`+strings.Repeat("é", 300)+`"}`)
	c := &Client{timeout: time.Second, now: time.Now}
	f.Fuzz(func(t *testing.T, status int, location, contentType, body string) {
		if status < 100 || status > 999 {
			status = 100 + (status%900+900)%900
		}
		a := &answer{status: status, header: http.Header{}, body: []byte(body)}
		if location != "" {
			a.header.Set("Location", location)
		}
		if contentType != "" {
			a.header.Set("Content-Type", contentType)
		}
		for _, grant := range []Grant{GrantPassword, ""} {
			var e *Error
			if status >= 200 && status < 300 && isJSON(mediaType(a.header)) {
				if _, e = parseTokenResponse(status, a.body, grant); e == nil {
					continue
				}
			} else {
				e = c.classifyAnswer(a, grant)
			}
			e = e.redact([]string{testSecret})
			msg := e.Error()
			if len(msg) > maxMessageLen || !utf8.ValidString(msg) ||
				strings.ContainsFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }) {
				t.Fatalf("message is not short and printable: %q", msg)
			}
			for _, s := range []string{msg, e.OAuthError, e.OAuthErrorDescription, fmt.Sprintf("%#v", e)} {
				for name, form := range forms {
					if strings.Contains(s, form) {
						t.Fatalf("%q holds the secret's %s form", s, name)
					}
				}
			}
		}
	})
}

func jsonQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
