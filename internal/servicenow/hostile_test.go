package servicenow_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// maxMessageLen is the documented bound of every *Error message.
const maxMessageLen = 512

// hostileSecret is a client secret that every encoding changes: query and
// path escaping differ on its space and "+", its "~~~" is "fn5+" in
// standard base64 and "fn5-" in base64url, and its length (25 bytes) gives
// padded base64 its "==".
const hostileSecret = "canary~~~secret/&+ ?%#é4"

// secretEncodings are the forms in which a hostile server could echo a
// secret it was sent: none may appear in an error.
func secretEncodings(secret string) map[string]string {
	b := []byte(secret)
	var everyByte, jsonEscapes, entities strings.Builder
	for _, c := range b {
		fmt.Fprintf(&everyByte, "%%%02X", c)
	}
	for _, r := range secret {
		fmt.Fprintf(&jsonEscapes, `\u%04x`, r)
		fmt.Fprintf(&entities, "&#%d;", r)
	}
	h := hex.EncodeToString(b)
	return map[string]string{
		"literal":                    secret,
		"query-escaped":              url.QueryEscape(secret),
		"path-escaped":               url.PathEscape(secret),
		"every byte percent-encoded": everyByte.String(),
		`JSON \u escapes`:            jsonEscapes.String(),
		"HTML entities":              entities.String(),
		"base64":                     base64.StdEncoding.EncodeToString(b),
		"raw base64":                 base64.RawStdEncoding.EncodeToString(b),
		"base64url":                  base64.URLEncoding.EncodeToString(b),
		"raw base64url":              base64.RawURLEncoding.EncodeToString(b),
		"hex":                        h,
		"upper-case hex":             strings.ToUpper(h),
	}
}

// jsonText is s as a JSON string literal, so that a body can carry any
// bytes the test wants the client to decode.
func jsonText(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// oauthErrorBody is an OAuth error body with arbitrary fields.
func oauthErrorBody(code, desc string) string {
	return `{"error":` + jsonText(code) + `,"error_description":` + jsonText(desc) + `}`
}

// expectSafeMessage checks every promise an error makes to its readers,
// whatever the server sent: bounded, printable, and free of every secret in
// every encoding, in the message, the exported fields and every rendering.
func expectSafeMessage(g Gomega, err error, secrets []string) {
	g.ExpectWithOffset(1, err).To(HaveOccurred())
	var e *servicenow.Error
	g.ExpectWithOffset(1, errors.As(err, &e)).To(BeTrue(), "want *servicenow.Error, got %T", err)
	msg := err.Error()
	g.ExpectWithOffset(1, len(msg)).To(BeNumerically("<=", maxMessageLen), "message too long: %q", msg)
	g.ExpectWithOffset(1, utf8.ValidString(msg)).To(BeTrue(), "message is not UTF-8: %q", msg)
	g.ExpectWithOffset(1, strings.ContainsFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) })).
		To(BeFalse(), "message has unprintable characters: %q", msg)
	g.ExpectWithOffset(1, len(e.OAuthError)).To(BeNumerically("<=", 64))
	g.ExpectWithOffset(1, len(e.OAuthErrorDescription)).To(BeNumerically("<=", 200))
	renderings := []string{msg, fmt.Sprintf("%v", err), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e),
		e.OAuthError, e.OAuthErrorDescription}
	for _, r := range renderings {
		for _, secret := range secrets {
			if secret == "" {
				continue
			}
			for name, form := range secretEncodings(secret) {
				g.ExpectWithOffset(1, r).NotTo(ContainSubstring(form), "an error leaks a secret (%s)", name)
			}
		}
	}
}

// TestHostileServerCannotSmuggleSecretsIntoErrors runs the real Client
// against a simulated instance that echoes the client secret back, encoded
// every way a message could carry it, and sends oversized and control
// characters: the user sees a short, printable message that says what
// happened and holds no form of the secret.
func TestHostileServerCannotSmuggleSecretsIntoErrors(t *testing.T) {
	forms := secretEncodings(hostileSecret)
	long := strings.Repeat("A", 60<<10)
	type hostile struct {
		name   string
		fault  simulator.Fault
		want   []string // in the message
		unwant []string // not in the message, besides the secret's forms
	}
	var cases []hostile
	// Each encoding of the secret, in an OAuth error_description.
	for _, name := range []string{"literal", "query-escaped", "path-escaped", "every byte percent-encoded",
		"HTML entities", "base64", "raw base64", "base64url", "raw base64url", "hex", "upper-case hex"} {
		cases = append(cases, hostile{
			name: "hides the client secret a server sends " + name + " in error_description",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 401, ContentType: jsonType,
				Body: oauthErrorBody("server_error", "bad client secret "+forms[name])},
			want: []string{"HTTP 401", `error "server_error"`, "ServiceNow rejected the token request"},
		})
	}
	cases = append(cases,
		hostile{
			name: `redacts the client secret a server sends as JSON \u escapes, which decode to the secret`,
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 401, ContentType: jsonType,
				Body: `{"error":"server_error","error_description":"bad client secret ` + forms[`JSON \u escapes`] + `"}`},
			want: []string{`error "server_error"`, `error_description "bad client secret [redacted]"`},
		},
		hostile{
			name: `omits an error_description with the client secret as JSON \u escapes, escaped again`,
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 401, ContentType: jsonType,
				Body: oauthErrorBody("server_error", "bad client secret "+forms[`JSON \u escapes`])},
			want: []string{`error "server_error"`, "a description was omitted"},
		},
		hostile{
			name: "redacts a plain-text echo of the secret and still shows the rest of the description",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 401, ContentType: jsonType,
				Body: oauthErrorBody("invalid_client", "client secret "+forms["raw base64url"]+" is wrong")},
			want: []string{`error "invalid_client"`, `error_description "client secret [redacted] is wrong"`},
		},
		hostile{
			name: "omits an error_description with control characters",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 401, ContentType: jsonType,
				Body: oauthErrorBody("server_error", "access\x00denied\x1b[31m\r\nX-Injected: yes\u2028\u202e")},
			want:   []string{`error "server_error"`, "a description was omitted"},
			unwant: []string{"Injected", "denied"},
		},
		hostile{
			name: "omits a 60 KB error_description and keeps the message short",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 401, ContentType: jsonType,
				Body: oauthErrorBody("server_error", long)},
			want:   []string{`error "server_error"`, "a description was omitted"},
			unwant: []string{"AAAA"},
		},
		hostile{
			name: "omits a 60 KB error_description on a 503 too",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 503, ContentType: jsonType,
				Body: oauthErrorBody("temporarily_unavailable", long+forms["hex"])},
			want: []string{"the instance is unavailable (HTTP 503", "a description was omitted"},
		},
		hostile{
			name: "says the error code is unrecognised when it is the client secret",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 400, ContentType: jsonType,
				Body: oauthErrorBody(hostileSecret, "access_denied")},
			want: []string{"HTTP 400, an unrecognised error code", `error_description "access_denied"`},
		},
		hostile{
			name: "says the error code is unrecognised when it is markup",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 401, ContentType: jsonType,
				Body: oauthErrorBody(`<script>alert("x")</script>`, "")},
			want:   []string{"an unrecognised error code"},
			unwant: []string{"script"},
		},
		hostile{
			name: "says the error code is unrecognised when it is 60 KB long",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 401, ContentType: jsonType,
				Body: oauthErrorBody(strings.Repeat("server_error", 5000), "access_denied")},
			want: []string{"an unrecognised error code", `error_description "access_denied"`},
		},
		hostile{
			name: "hides the secret in a 2xx answer that carries an OAuth error",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 200, ContentType: jsonType,
				Body: oauthErrorBody("invalid_grant", "secret="+forms["query-escaped"])},
			want: []string{"HTTP 200", `error "invalid_grant"`, "a description was omitted"},
		},
		hostile{
			name: "hides the secret in a REST API error envelope",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 429, ContentType: jsonType,
				Body: `{"error":{"message":` + jsonText("Rate limit for "+forms["raw base64url"]) +
					`,"detail":` + jsonText(forms["HTML entities"]) + `},"status":"failure"}`},
			want: []string{"HTTP 429", `error "Rate limit for [redacted]"`, "a description was omitted"},
		},
		hostile{
			name: "names only the host of a 60 KB Location on a 302",
			fault: simulator.Fault{Kind: simulator.FaultRedirect, Status: 302,
				Location: "https://sso.example.net/login?client_secret=" + forms["query-escaped"] + "&pad=" + long},
			want:   []string{"redirected (HTTP 302) to the host sso.example.net;"},
			unwant: []string{"https://", "login", "client_secret", "AAAA"},
		},
		hostile{
			name: "does not name a host of 60 KB a 302 points to",
			fault: simulator.Fault{Kind: simulator.FaultRedirect, Status: 302,
				Location: "https://" + strings.Repeat("a.", 30<<10) + "example.net/" + forms["hex"]},
			want:   []string{"redirected (HTTP 302) to another host;"},
			unwant: []string{"a.a.a"},
		},
		hostile{
			name: "does not name the host of a Location with user information holding the secret",
			fault: simulator.Fault{Kind: simulator.FaultRedirect, Status: 302,
				Location: "https://" + forms["path-escaped"] + "@sso.example.net/"},
			want:   []string{"redirected (HTTP 302) to the host sso.example.net;"},
			unwant: []string{"@"},
		},
		hostile{
			// net/http refuses the header line and quotes it, escaped, in
			// its error: the message must not repeat that error.
			name: "does not quote a Location with control characters and the secret percent-encoded",
			fault: simulator.Fault{Kind: simulator.FaultRedirect, Status: 302,
				Location: "https://sso.example.net/\x01\x1b[2J" + forms["every byte percent-encoded"]},
			unwant: []string{"MIME", `\x01`, "%63"},
		},
		hostile{
			name: "does not quote a content type that carries the secret",
			fault: simulator.Fault{Kind: simulator.FaultResponse, Status: 200,
				ContentType: "text/" + forms["raw base64url"] + "; secret=" + forms["hex"], Body: "x"},
			want: []string{"HTTP 200 with content type \"text/[redacted]\""},
		},
	)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newFixture(t, simulator.Options{})
			f.sim.SetFault(tc.fault)
			req := f.request(servicenow.GrantPassword)
			req.Credentials.ClientSecret = hostileSecret

			_, err := f.client.Token(context.Background(), req)

			t.Logf("error: %v", err)
			expectSafeMessage(g, err, []string{hostileSecret, canaryPassword, canaryRefreshToken, canaryCode,
				canaryVerifier})
			for _, want := range tc.want {
				g.Expect(err.Error()).To(ContainSubstring(want))
			}
			for _, unwant := range tc.unwant {
				g.Expect(err.Error()).NotTo(ContainSubstring(unwant))
			}
		})
	}
}

// TestRandomErrorAnswersGiveShortPrintableMessages is a property test: for
// random error answers, built from the secret's encodings, markup, control
// characters, non-ASCII and random bytes, the real Client's message stays
// bounded, printable and free of the secret.
func TestRandomErrorAnswersGiveShortPrintableMessages(t *testing.T) {
	const seed = 20260501
	rng := rand.New(rand.NewPCG(seed, seed))
	forms := secretEncodings(hostileSecret)
	formNames := slices.Sorted(maps.Keys(forms)) // a fixed order, so that the seed fixes every case
	pieces := []string{"access_denied", "server_error", " ", "%", `\`, "&amp;", "#", "<b>", `"`, "\x00", "\x1b[31m",
		"\r\n", "\u202e", "é", "\xff\xfe", "[redacted]", "(", "'", strings.Repeat("z", 300)}
	randomText := func() string {
		var b strings.Builder
		for range rng.IntN(8) {
			switch rng.IntN(3) {
			case 0:
				b.WriteString(forms[formNames[rng.IntN(len(formNames))]])
			case 1:
				b.WriteString(pieces[rng.IntN(len(pieces))])
			default:
				raw := make([]byte, rng.IntN(40))
				for i := range raw {
					raw[i] = byte(rng.UintN(256))
				}
				b.Write(raw)
			}
		}
		return b.String()
	}
	statuses := []int{200, 400, 401, 403, 404, 408, 418, 429, 500, 502, 503}
	contentTypes := []string{jsonType, "application/json", "text/html", "text/plain", "",
		"application/" + forms["raw base64url"]}

	f := newFixture(t, simulator.Options{})
	for i := range 300 {
		var body string
		switch rng.IntN(4) {
		case 0:
			body = oauthErrorBody(randomText(), randomText())
		case 1:
			body = `{"error":{"message":` + jsonText(randomText()) + `,"detail":` + jsonText(randomText()) + `}}`
		case 2:
			body = `{"error":` + jsonText(randomText()) + `}`
		default:
			body = randomText()
		}
		fault := simulator.Fault{Kind: simulator.FaultResponse, Status: statuses[rng.IntN(len(statuses))],
			ContentType: contentTypes[rng.IntN(len(contentTypes))], Body: body}
		if rng.IntN(5) == 0 {
			fault = simulator.Fault{Kind: simulator.FaultRedirect, Status: 301 + rng.IntN(8),
				Location: []string{"https://", "", "//"}[rng.IntN(3)] + randomText()}
		}
		f.sim.SetFault(fault)
		req := f.request(servicenow.GrantPassword)
		req.Credentials.ClientSecret = hostileSecret

		_, err := f.client.Token(context.Background(), req)

		if err == nil {
			t.Fatalf("case %d (seed %d): %+v was accepted as a token", i, seed, fault)
		}
		expectSafeMessage(NewWithT(t), err, []string{hostileSecret})
		if t.Failed() {
			t.Fatalf("case %d (seed %d): %+v gave %q", i, seed, fault, err.Error())
		}
	}
}
