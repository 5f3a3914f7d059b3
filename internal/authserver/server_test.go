package authserver

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

func testServer(g *WithT) (*Server, *Signer) {
	signer, _ := NewSigner(testKey)
	external, err := ParseExternalURL("https://snowauth.example.com/prefix/")
	g.Expect(err).NotTo(HaveOccurred())
	conn := &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "catalog", UID: types.UID("uid-1")},
		Spec:       snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantAuthorizationCode},
		Status:     snowv1.ServiceNowConnectionStatus{Authorization: &snowv1.AuthorizationStatus{LinkID: LinkID(testState().Nonce)}},
	}
	scheme := runtime.NewScheme()
	_ = snowv1.AddToScheme(scheme)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(conn).WithStatusSubresource(conn).Build()
	instances, err := servicenow.NewClient(servicenow.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	return &Server{Reader: c, Writer: c, Namespace: "snowauth-system", Instances: instances,
		Links: &Links{Keys: StaticKeys{S: signer}, ExternalURL: external}, Now: func() time.Time { return t0 }}, signer
}

// A flood of requests without a state snowauth signed costs nothing and
// uses up nobody's budget: the link of a connection still works. The
// budget of one connection is its own.
func TestRateLimitsApplyOnlyToSignedLinksAndPerConnection(t *testing.T) {
	g := NewWithT(t)
	s, signer := testServer(g)
	h := s.Handler()
	get := func(state string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/prefix/authorize?state="+url.QueryEscape(state), nil))
		return rec.Code
	}
	for range 1000 {
		g.Expect(get("forged.state")).To(Equal(http.StatusBadRequest))
	}
	link := signer.Sign(testState())
	g.Expect(get(link)).NotTo(Equal(http.StatusTooManyRequests), "a flood of forged states blocks no one")

	codes := map[int]int{}
	for range connBurst + 5 {
		codes[get(link)]++
	}
	g.Expect(codes[http.StatusTooManyRequests]).To(BeNumerically(">=", 5), "one link hammered is limited: %v", codes)

	other := testState()
	other.Name = "billing"
	g.Expect(get(signer.Sign(other))).NotTo(Equal(http.StatusTooManyRequests), "another connection's budget is its own")
}

// The routes live under the external URL's path prefix, and only there.
func TestRoutesAreServedUnderTheExternalURLsPathPrefix(t *testing.T) {
	g := NewWithT(t)
	s, _ := testServer(g)
	h := s.Handler()
	for path, want := range map[string]int{"/prefix/healthz": http.StatusOK, "/healthz": http.StatusNotFound, "/authorize": http.StatusNotFound} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		g.Expect(rec.Code).To(Equal(want), path)
	}
	g.Expect(s.Links.RedirectURI()).To(Equal("https://snowauth.example.com/prefix/callback"))
}

func TestTheExternalURLMustBeHTTPSWithoutUserinfoQueryOrFragment(t *testing.T) {
	for raw, want := range map[string]string{
		"http://snowauth.example.com":          "must use https://",
		"https://user:pw@snowauth.example.com": "must not carry a user name or password",
		"https://snowauth.example.com/?x=1":    "must not carry a query or a fragment",
		"https://snowauth.example.com/#top":    "must not carry a query or a fragment",
		"snowauth.example.com":                 "is not an absolute URL",
		"":                                     "is not an absolute URL",
	} {
		_, err := ParseExternalURL(raw)
		NewWithT(t).Expect(err).To(MatchError(ContainSubstring(want)), raw)
	}
	for _, ok := range []string{"https://snowauth.example.com", "https://snowauth.example.com/p/", "http://127.0.0.1:8082", "http://localhost:8082"} {
		_, err := ParseExternalURL(ok)
		NewWithT(t).Expect(err).NotTo(HaveOccurred(), ok)
	}
}

// TestErrorPagesEscapeWhatTheyShow: a page never reflects markup.
func TestErrorPagesEscapeWhatTheyShow(t *testing.T) {
	g := NewWithT(t)
	rec := httptest.NewRecorder()
	page(rec, http.StatusBadRequest, "Authorization failed", `<script>alert("x")</script>`)
	g.Expect(rec.Body.String()).NotTo(ContainSubstring("<script>"))
	g.Expect(rec.Body.String()).To(ContainSubstring("&lt;script&gt;"))
	g.Expect(rec.Header().Get("Content-Security-Policy")).To(Equal("default-src 'none'; frame-ancestors 'none'"))
	g.Expect(rec.Header().Get("Referrer-Policy")).To(Equal("no-referrer"))
}

// The go-ahead cannot come from another site's form: a logged-in person
// is not walked through consent for someone else's link.
func TestGoingOnFromAnotherSitesFormIsRefused(t *testing.T) {
	g := NewWithT(t)
	s, signer := testServer(g)
	h := s.Handler()
	form := url.Values{"state": {signer.Sign(testState())}}.Encode()
	for site, want := range map[string]int{"cross-site": http.StatusForbidden, "same-site": http.StatusForbidden} {
		req := httptest.NewRequest(http.MethodPost, "/prefix/authorize", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", site)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		g.Expect(rec.Code).To(Equal(want), site)
		g.Expect(rec.Body.String()).To(ContainSubstring("came from another site"))
		g.Expect(rec.Header().Values("Set-Cookie")).To(BeEmpty(), "no browser binding for a forged go-ahead")
	}
	req := httptest.NewRequest(http.MethodPost, "/prefix/authorize", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	g.Expect(rec.Code).NotTo(Equal(http.StatusForbidden), "the server's own page may go on: %s", rec.Body.String())
}
