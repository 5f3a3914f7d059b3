package authserver

import (
	"encoding/json"
	"net/http"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// The JWTBearer grant's managed keys are published here, one JWKS document
// per connection at {prefix}/jwks/{namespace}/{name}.json, for the
// instance's JWT verifier map to fetch. The document is made of the public
// keys the manager wrote in status.jwtBearer.keys: the server holds no key
// and reads no Secret, and a key that is not public is never served.

// jwksPerSecond and jwksBurst bound the API server reads that anonymous
// JWKS requests cause, whatever the names asked for (limits.allowAnonymous):
// an instance fetches a document once per cache lifespan.
var (
	jwksPerSecond = rate.Limit(10)
	jwksBurst     = 50
)

// jwks serves a connection's JWKS document; 404 for anything that is not a
// JWTBearer connection with published keys.
func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	namespace := r.PathValue("namespace")
	name, ok := strings.CutSuffix(r.PathValue("file"), ".json")
	if !ok || len(validation.IsDNS1123Label(namespace)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		http.NotFound(w, r)
		return
	}
	if !s.limits.allowAnonymous(clientAddress(r), s.now()) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return
	}
	conn := &snowv1.ServiceNowConnection{}
	err := s.Reader.Get(r.Context(), types.NamespacedName{Namespace: namespace, Name: name}, conn)
	switch {
	case apierrors.IsNotFound(err):
		http.NotFound(w, r)
		return
	case err != nil:
		http.Error(w, "cannot read the keys right now; try again", http.StatusServiceUnavailable)
		return
	case conn.Spec.GrantType != snowv1.GrantJWTBearer || conn.Status.JWTBearer == nil || len(conn.Status.JWTBearer.Keys) == 0:
		http.NotFound(w, r)
		return
	}
	body, err := json.Marshal(PublicKeySet(conn.Status.JWTBearer.Keys))
	if err != nil {
		http.Error(w, "cannot encode the keys", http.StatusInternalServerError)
		return
	}
	// Served fresh each time: the instance's own cache lifespan is what
	// rotation is planned around.
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
	logf.FromContext(r.Context()).V(1).Info("served a JWKS document", "namespace", namespace, "name", name, "keys", len(conn.Status.JWTBearer.Keys))
}

// PublicKeySet is the JWKS document of published keys: each parsed and
// reduced to its public half, named and marked for signatures. A key that
// does not parse, or was written with private material, is left out.
func PublicKeySet(keys []snowv1.PublishedKey) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range keys {
		var jwk jose.JSONWebKey
		if err := json.Unmarshal([]byte(k.PublicKey), &jwk); err != nil || !jwk.IsPublic() || !jwk.Valid() {
			continue
		}
		pub := jwk.Public()
		pub.KeyID, pub.Algorithm, pub.Use = k.KeyID, string(k.Algorithm), "sig"
		set.Keys = append(set.Keys, pub)
	}
	return set
}
