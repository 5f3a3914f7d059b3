package authserver

import (
	"net/http"
	"net/http/httptest"
	"testing"

	. "github.com/onsi/gomega"
	"golang.org/x/time/rate"
)

// TestEndpointsAreRateLimited: once the budget is spent, both endpoints
// answer 429 with Retry-After and a page that says so, before looking at
// the request at all.
func TestEndpointsAreRateLimited(t *testing.T) {
	g := NewWithT(t)
	signer, _ := NewSigner(testKey)
	s := &Server{Links: &Links{Signer: signer}, Limiter: rate.NewLimiter(0, 2)}
	h := s.Handler()

	for _, path := range []string{"/authorize", "/callback"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		g.Expect(rec.Code).To(Equal(http.StatusBadRequest), "%s within the budget: the missing state is reported", path)
	}
	for _, path := range []string{"/authorize", "/callback"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path+"?state=x.y", nil))
		g.Expect(rec.Code).To(Equal(http.StatusTooManyRequests), path)
		g.Expect(rec.Header().Get("Retry-After")).To(Equal("1"))
		g.Expect(rec.Header().Get("Cache-Control")).To(Equal("no-store"))
		g.Expect(rec.Body.String()).To(ContainSubstring("Too many authorization requests"))
	}
}

// TestErrorPagesEscapeWhatTheyShow: a page never reflects markup.
func TestErrorPagesEscapeWhatTheyShow(t *testing.T) {
	g := NewWithT(t)
	rec := httptest.NewRecorder()
	page(rec, http.StatusBadRequest, "Authorization failed", `<script>alert("x")</script>`)
	g.Expect(rec.Body.String()).NotTo(ContainSubstring("<script>"))
	g.Expect(rec.Body.String()).To(ContainSubstring("&lt;script&gt;"))
	g.Expect(rec.Header().Get("Content-Security-Policy")).To(Equal("default-src 'none'"))
	g.Expect(rec.Header().Get("Referrer-Policy")).To(Equal("no-referrer"))
}
