package servicenow_test

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/servicenow/simulator"
)

// accessToken obtains a valid access token from f's simulator.
func (f *fixture) accessToken(t *testing.T) string {
	t.Helper()
	tok, err := f.client.Token(context.Background(), f.request(servicenow.GrantPassword))
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok.AccessToken
}

func TestProbe(t *testing.T) {
	const incident = "/api/now/table/incident?sysparm_limit=1&sysparm_fields=sys_id"

	t.Run("counts the rows of a Table API query that answers 200", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		f.sim.SetTableAccess("incident", simulator.TableAccess{Rows: 3})

		res, err := f.client.Probe(context.Background(), f.base, f.accessToken(t), incident)

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.StatusCode).To(Equal(http.StatusOK))
		g.Expect(res.TableRows).To(BeTrue())
		g.Expect(res.Rows).To(Equal(1), "sysparm_limit=1")
		g.Expect(res.RateLimit.IsZero()).To(BeTrue(), "no rate limit rule matched")
		g.Expect(f.sim.TableRequests("incident")).To(Equal(1))
	})

	t.Run("reports no rows when ACLs hide every record", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		f.sim.SetTableAccess("incident", simulator.TableAccess{Rows: 0})

		res, err := f.client.Probe(context.Background(), f.base, f.accessToken(t), "/api/now/v2/table/incident?sysparm_limit=1")

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.TableRows).To(BeTrue())
		g.Expect(res.Rows).To(Equal(0))
	})

	t.Run("counts no rows on a path that is not a Table API list", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})

		res, err := f.client.Probe(context.Background(), f.base, f.accessToken(t), "/api/now/ui/user/current_user")

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.TableRows).To(BeFalse())
	})

	t.Run("quotes ServiceNow's message on a 403 for a missing REST API auth scope", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		f.sim.SetTableAccess("incident", simulator.TableAccess{Status: http.StatusForbidden, Message: "Missing required api access scope"})

		res, err := f.client.Probe(context.Background(), f.base, f.accessToken(t), incident)

		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindAuthenticationFailed))
		g.Expect(res.StatusCode).To(Equal(http.StatusForbidden))
		var se *servicenow.Error
		g.Expect(errors.As(err, &se)).To(BeTrue())
		g.Expect(se.StatusCode).To(Equal(http.StatusForbidden))
		g.Expect(err.Error()).To(ContainSubstring(`HTTP 403, error "Missing required api access scope"`))
	})

	t.Run("quotes User Not Authenticated on a 401", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})

		res, err := f.client.Probe(context.Background(), f.base, "not-a-token-of-this-instance", incident)

		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindAuthenticationFailed))
		g.Expect(res.StatusCode).To(Equal(http.StatusUnauthorized))
		g.Expect(err.Error()).To(ContainSubstring(`error "User Not Authenticated", detail "Required to provide Auth information"`))
	})

	t.Run("reports the rate limit headers, and a 429 beyond the limit", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		f.sim.SetTableAccess("incident", simulator.TableAccess{Rows: 1})
		const rule = "5f2e4a1bdb3313003a7a52e5ae9619c4"
		f.sim.SetRateLimit(simulator.RateLimitRule{Limit: 2, SysID: rule})
		token := f.accessToken(t)
		reset := f.sim.Now().Truncate(time.Hour).Add(time.Hour)

		for range 2 {
			res, err := f.client.Probe(context.Background(), f.base, token, incident)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res.RateLimit).To(Equal(servicenow.RateLimit{Limit: 2, Reset: reset.UTC(), Rule: rule}))
		}
		res, err := f.client.Probe(context.Background(), f.base, token, incident)

		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindRateLimited))
		var se *servicenow.Error
		g.Expect(errors.As(err, &se)).To(BeTrue())
		g.Expect(se.RetryAfter).To(BeNumerically(">", 0))
		g.Expect(err.Error()).To(ContainSubstring("Rate limit exceeded"))
		g.Expect(res.RateLimit.Limit).To(Equal(2), "a 429 carries the headers too")
	})

	t.Run("never follows a redirect: the token goes to the instance only", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		elsewhere := simulator.New(simulator.Options{})
		t.Cleanup(elsewhere.Close)
		elsewhere.SetTableAccess("incident", simulator.TableAccess{Rows: 1})
		token := f.accessToken(t)
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultRedirect, Status: http.StatusFound,
			Location: elsewhere.LocalhostURL() + "/api/now/table/incident"})

		_, err := f.client.Probe(context.Background(), f.base, token, incident)

		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindInvalidInstance))
		g.Expect(err.Error()).To(ContainSubstring("never follows redirects"))
		g.Expect(elsewhere.TableRequests("incident")).To(Equal(0))
	})

	t.Run("reads at most MaxProbeBody bytes of a long answer and still counts it a success", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		token := f.accessToken(t)
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultResponse, Status: http.StatusOK, ContentType: "application/json",
			Body: `{"result":[{"description":"` + strings.Repeat("x", 4*servicenow.MaxProbeBody) + `"}]}`})

		res, err := f.client.Probe(context.Background(), f.base, token, incident)

		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.Truncated).To(BeTrue())
		g.Expect(res.TableRows).To(BeFalse(), "rows are not counted from a partial answer")
	})

	t.Run("reports an HTML page answered with 200 as an invalid response", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		token := f.accessToken(t)
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultResponse, Status: http.StatusOK, ContentType: "text/html",
			Body: "<html><body>Log in</body></html>"})

		_, err := f.client.Probe(context.Background(), f.base, token, incident)

		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindInvalidResponse))
	})

	t.Run("reports a hibernating instance", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		token := f.accessToken(t)
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultHibernating})

		_, err := f.client.Probe(context.Background(), f.base, token, incident)

		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindInstanceHibernating))
	})

	t.Run("gives up after the client's timeout when it is shorter than ProbeTimeout", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		token := f.accessToken(t)
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultHang})
		started := time.Now()

		_, err := f.client.Probe(context.Background(), f.base, token, incident)

		g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindTimeout))
		g.Expect(time.Since(started)).To(BeNumerically("<", 5*testTimeout))
	})

	t.Run("never quotes the token, even when the instance echoes it", func(t *testing.T) {
		g := NewWithT(t)
		f := newFixture(t, simulator.Options{})
		f.sim.SetFault(simulator.Fault{Kind: simulator.FaultResponse, Status: http.StatusForbidden, ContentType: "application/json",
			Body: `{"error":{"message":"token ` + canaryAccessToken + ` lacks a scope","detail":null},"status":"failure"}`})

		_, err := f.client.Probe(context.Background(), f.base, canaryAccessToken, incident)

		g.Expect(err).To(HaveOccurred())
		g.Expect(err.Error()).NotTo(ContainSubstring(canaryAccessToken))
	})
}

// refusingTransport fails any request: nothing may be sent.
type refusingTransport struct{ t *testing.T }

func (r refusingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.t.Errorf("a request was sent to %s", req.URL.Redacted())
	return nil, http.ErrHandlerTimeout
}

func TestProbeRefusesPathsThatAreNotAPathOfTheInstanceWithoutSending(t *testing.T) {
	client, err := servicenow.NewClient(servicenow.Options{Transport: refusingTransport{t}})
	if err != nil {
		t.Fatal(err)
	}
	base, err := client.ResolveInstance("dev98042")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"",
		"api/now/table/incident",
		"https://evil.example.com/api/now/table/incident",
		"//evil.example.com/api/now/table/incident",
		"/oauth_token.do",
		"/api/now/table/../../oauth_token.do",
		"/api/now/./table/incident",
		"/api/now/table/%2e%2e/x",
		"/api/now/table%2Fincident",
		"/api//now/table/incident",
		"/api/now/table/incident#frag",
		"/api/now/table/incident?q=a b",
		"/api/now/table/incident\\..",
		"/api/now/table/incident\r\nHost: evil",
		"/api/now/table/incidént",
		"/api/" + strings.Repeat("a", 2000),
	} {
		t.Run(path, func(t *testing.T) {
			g := NewWithT(t)
			_, err := client.Probe(context.Background(), base, canaryAccessToken, path)
			g.Expect(servicenow.KindOf(err)).To(Equal(servicenow.KindInvalidRequest))
			g.Expect(err.Error()).To(ContainSubstring("nothing was sent"))
		})
	}
}

func TestIsTableList(t *testing.T) {
	g := NewWithT(t)
	g.Expect(servicenow.IsTableList("/api/now/table/incident?sysparm_limit=1")).To(BeTrue())
	g.Expect(servicenow.IsTableList("/api/now/v2/table/incident")).To(BeTrue())
	g.Expect(servicenow.IsTableList("/api/now/table/incident/0123456789abcdef0123456789abcdef")).To(BeFalse())
	g.Expect(servicenow.IsTableList("/api/now/ui/user/current_user")).To(BeFalse())
	g.Expect(servicenow.IsTableList("/api/x_acme/table/incident")).To(BeFalse())
}

// TestProbeMessagesAreSafeWhateverTheInstanceAnswers: random error answers
// to a probe, built from the token's encodings, markup and random bytes, give
// bounded, printable messages without the token, as for token requests.
func TestProbeMessagesAreSafeWhateverTheInstanceAnswers(t *testing.T) {
	const seed = 20260502
	rng := rand.New(rand.NewPCG(seed, seed))
	forms := secretEncodings(hostileSecret)
	formNames := slices.Sorted(maps.Keys(forms))
	pieces := []string{"Missing required api access scope", " ", "%", `\`, "&amp;", "<b>", `"`, "\x00", "\r\n", "é", "\xff", strings.Repeat("z", 300)}
	randomText := func() string {
		var b strings.Builder
		for range rng.IntN(6) {
			if rng.IntN(2) == 0 {
				b.WriteString(forms[formNames[rng.IntN(len(formNames))]])
			} else {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
		}
		return b.String()
	}
	statuses := []int{200, 302, 400, 401, 403, 404, 408, 429, 500, 503}
	contentTypes := []string{jsonType, "text/html", "text/plain", "", "application/" + forms["raw base64url"]}

	f := newFixture(t, simulator.Options{})
	for i := range 200 {
		body := `{"error":{"message":` + jsonText(randomText()) + `,"detail":` + jsonText(randomText()) + `},"status":"failure"}`
		if rng.IntN(3) == 0 {
			body = randomText()
		}
		fault := simulator.Fault{Kind: simulator.FaultResponse, Status: statuses[rng.IntN(len(statuses))],
			ContentType: contentTypes[rng.IntN(len(contentTypes))], Body: body}
		f.sim.SetFault(fault)

		_, err := f.client.Probe(context.Background(), f.base, hostileSecret, "/api/now/table/incident?sysparm_limit=1")

		if err == nil {
			continue // a 2xx that is not an HTML page is a success; nothing is quoted
		}
		expectSafeMessage(NewWithT(t), err, []string{hostileSecret})
		if t.Failed() {
			t.Fatalf("case %d (seed %d): %+v gave %q", i, seed, fault, err.Error())
		}
	}
}
