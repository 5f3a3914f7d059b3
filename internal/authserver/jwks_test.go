package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// jwkJSON marshals a JSON Web Key as the manager writes it to status; with
// private set, as a mistaken writer would.
func jwkJSON(g *WithT, private bool, kid string) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g.Expect(err).NotTo(HaveOccurred())
	jwk := jose.JSONWebKey{Key: key.Public(), KeyID: kid, Algorithm: "ES256", Use: "sig"}
	if private {
		jwk.Key = key
	}
	b, err := json.Marshal(jwk)
	g.Expect(err).NotTo(HaveOccurred())
	return string(b)
}

func jwksServer(g *WithT, objs ...*snowv1.ServiceNowConnection) http.Handler {
	s, _ := testServer(g)
	scheme := runtime.NewScheme()
	_ = snowv1.AddToScheme(scheme)
	b := fake.NewClientBuilder().WithScheme(scheme)
	for _, o := range objs {
		b = b.WithObjects(o).WithStatusSubresource(o)
	}
	s.Reader = b.Build()
	return s.Handler()
}

func jwtConnection(name string, keys ...snowv1.PublishedKey) *snowv1.ServiceNowConnection {
	return &snowv1.ServiceNowConnection{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name},
		Spec:       snowv1.ServiceNowConnectionSpec{GrantType: snowv1.GrantJWTBearer},
		Status:     snowv1.ServiceNowConnectionStatus{JWTBearer: &snowv1.JWTBearerStatus{Keys: keys}},
	}
}

func TestTheJWKSDocumentHoldsThePublishedPublicKeysOnly(t *testing.T) {
	g := NewWithT(t)
	h := jwksServer(g, jwtConnection("catalog",
		snowv1.PublishedKey{KeyID: "old", Algorithm: "ES256", PublicKey: jwkJSON(g, false, "old")},
		snowv1.PublishedKey{KeyID: "leaked", Algorithm: "ES256", PublicKey: jwkJSON(g, true, "leaked")},
		snowv1.PublishedKey{KeyID: "new", Algorithm: "ES256", PublicKey: jwkJSON(g, false, "new")},
	))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/prefix/jwks/apps/catalog.json", nil))

	g.Expect(rec.Code).To(Equal(http.StatusOK))
	g.Expect(rec.Header().Get("Content-Type")).To(Equal("application/json"))
	var set jose.JSONWebKeySet
	g.Expect(json.Unmarshal(rec.Body.Bytes(), &set)).To(Succeed())
	var ids []string
	for _, k := range set.Keys {
		g.Expect(k.IsPublic()).To(BeTrue())
		g.Expect(k.Use).To(Equal("sig"))
		ids = append(ids, k.KeyID)
	}
	g.Expect(ids).To(Equal([]string{"old", "new"}), "a key written with its private half is never served")
	var raw struct{ Keys []map[string]any }
	g.Expect(json.Unmarshal(rec.Body.Bytes(), &raw)).To(Succeed())
	for _, k := range raw.Keys {
		g.Expect(k).NotTo(HaveKey("d"))
	}
}

func TestTheJWKSEndpointAnswers404ForAnythingButAJWTBearerConnectionWithKeys(t *testing.T) {
	g := NewWithT(t)
	other := jwtConnection("billing")
	other.Spec.GrantType = snowv1.GrantClientCredentials
	h := jwksServer(g, jwtConnection("empty"), other)
	for _, path := range []string{
		"/prefix/jwks/apps/missing.json", "/prefix/jwks/apps/empty.json", "/prefix/jwks/apps/billing.json",
		"/prefix/jwks/apps/catalog", "/prefix/jwks/Apps!/catalog.json", "/jwks/apps/catalog.json",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		g.Expect(rec.Code).To(Equal(http.StatusNotFound), path)
	}
}

func TestAnonymousJWKSRequestsAreBoundedWhateverTheyAskFor(t *testing.T) {
	g := NewWithT(t)
	h := jwksServer(g)
	codes := map[int]int{}
	for i := range jwksBurst + 20 {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/prefix/jwks/apps/name-"+string(rune('a'+i%26))+".json", nil)
		r.RemoteAddr = "192.0.2." + string(rune('0'+i%10)) + ":1234" // many clients
		h.ServeHTTP(rec, r)
		codes[rec.Code]++
	}
	g.Expect(codes[http.StatusTooManyRequests]).To(Equal(20), "API server reads are bounded: %v", codes)
}
