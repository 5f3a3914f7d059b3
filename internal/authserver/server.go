package authserver

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/credentials"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// Keys of the refresh-token Secret. It is operator-owned and never mounted
// by applications.
const (
	RefreshTokenKey = "refresh_token"
	IssuedAtKey     = "issued_at"
)

// TokenSource is the part of the ServiceNow client the server needs.
type TokenSource interface {
	ResolveInstance(instance string) (servicenow.Instance, error)
	Token(ctx context.Context, req servicenow.TokenRequest) (*servicenow.Token, error)
}

// Server answers the start link and the callback.
type Server struct {
	// Client writes the refresh-token Secret; APIReader reads connections
	// and Secrets fresh from the API server (a callback must not act on a
	// stale view of a connection deleted a moment ago).
	Client    client.Client
	APIReader client.Reader
	Tokens    TokenSource
	Links     *Links
	Recorder  events.EventRecorder
	// Addr is the listen address, e.g. ":8082".
	Addr string
	// Now defaults to time.Now.
	Now func() time.Time
	// Limiter bounds requests to both endpoints together; a default of 5
	// per second with bursts of 20 is used when nil.
	Limiter *rate.Limiter
}

// Start serves until ctx ends. It implements manager.Runnable.
func (s *Server) Start(ctx context.Context) error {
	srv := &http.Server{
		Addr:              s.Addr,
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second, // a callback waits for ServiceNow's token endpoint
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

// NeedLeaderElection is false: every replica can answer, the state is
// self-contained.
func (s *Server) NeedLeaderElection() bool { return false }

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler {
	if s.Limiter == nil {
		s.Limiter = rate.NewLimiter(5, 20)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", s.limited(s.authorize))
	mux.HandleFunc("GET /callback", s.limited(s.callback))
	return mux
}

func (s *Server) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.Limiter.Allow() {
			w.Header().Set("Retry-After", "1")
			page(w, http.StatusTooManyRequests, "Too many requests", "Too many authorization requests right now. Try again in a moment.")
			return
		}
		h(w, r)
	}
}

// flow is a verified state and what it refers to.
type flow struct {
	state    State
	raw      string
	conn     *snowv1.ServiceNowConnection
	instance servicenow.Instance
	creds    servicenow.Credentials
}

// authorize sends the browser to the connection's own instance's login page.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	f, status, err := s.resume(r)
	if err != nil {
		page(w, status, "Cannot start the authorization", err.Error())
		return
	}
	challenge := servicenow.S256Challenge(s.Links.Signer.CodeVerifier(f.state.Nonce))
	target := servicenow.AuthCodeURL(f.instance, f.creds.ClientID, s.Links.RedirectURI(), f.raw, challenge)
	noStore(w)
	http.Redirect(w, r, target, http.StatusFound)
}

// callback exchanges the code and stores the refresh token.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	log := logf.FromContext(r.Context()).WithName("authserver")
	f, status, err := s.resume(r)
	if err != nil {
		page(w, status, "Authorization failed", err.Error())
		return
	}
	name := f.conn.Namespace + "/" + f.conn.Name
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		s.event(f.conn, corev1.EventTypeWarning, "AuthorizationDenied",
			"ServiceNow reported %q at the callback: the person declined or could not log in", clean(e))
		page(w, http.StatusForbidden, "Authorization declined",
			fmt.Sprintf("ServiceNow reported %q: connection %s was not authorised. Start again from its authorization link.", clean(e), name))
		return
	}
	code := q.Get("code")
	if code == "" {
		page(w, http.StatusBadRequest, "Authorization failed", "The callback carries no authorization code. Start again from the connection's authorization link.")
		return
	}
	creds := f.creds
	creds.Code, creds.RedirectURI, creds.CodeVerifier = code, s.Links.RedirectURI(), s.Links.Signer.CodeVerifier(f.state.Nonce)
	tok, err := s.Tokens.Token(r.Context(), servicenow.TokenRequest{
		Instance: f.instance, Grant: servicenow.GrantAuthorizationCode, Credentials: creds,
	})
	if err != nil {
		// The client's errors never carry the code, a secret or the body.
		s.event(f.conn, corev1.EventTypeWarning, "AuthorizationFailed", "exchanging the authorization code failed: %s", err.Error())
		log.Info("authorization code exchange failed", "connection", name, "reason", servicenow.KindOf(err))
		page(w, http.StatusBadGateway, "Authorization failed",
			fmt.Sprintf("ServiceNow did not accept the authorization of connection %s (%s). The code may have expired or been used already. Start again from the connection's authorization link.",
				name, servicenow.KindOf(err)))
		return
	}
	now := s.now()
	if err := s.storeRefreshToken(r.Context(), f, tok.RefreshToken, now); err != nil {
		log.Error(err, "storing the refresh token", "connection", name)
		page(w, http.StatusInternalServerError, "Authorization failed",
			fmt.Sprintf("The authorization of connection %s succeeded but could not be stored: %s", name, err.Error()))
		return
	}
	s.event(f.conn, corev1.EventTypeNormal, "Authorized", "a person authorised snowauth at %s; the refresh token is stored in Secret %s",
		f.instance.String(), f.conn.RefreshTokenSecretName())
	log.Info("connection authorised", "connection", name)
	page(w, http.StatusOK, "Connection authorised",
		fmt.Sprintf("Connection %s is authorised. snowauth now keeps its token fresh; you can close this window.", name))
}

// resume verifies the state of a request and finds what it refers to: the
// same connection (same UID), still using the AuthorizationCode grant, with
// the same credentials, and a nonce not used before.
func (s *Server) resume(r *http.Request) (*flow, int, error) {
	raw := r.URL.Query().Get("state")
	if raw == "" {
		return nil, http.StatusBadRequest, errors.New("the request carries no state")
	}
	st, err := s.Links.Signer.Verify(raw, s.now())
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("%w: open the connection's current authorization link (kubectl servicenow authorize)", err)
	}
	ctx := r.Context()
	name := st.Namespace + "/" + st.Name
	conn := &snowv1.ServiceNowConnection{}
	err = s.APIReader.Get(ctx, types.NamespacedName{Namespace: st.Namespace, Name: st.Name}, conn)
	switch {
	case apierrors.IsNotFound(err) || err == nil && string(conn.UID) != st.UID:
		return nil, http.StatusGone, fmt.Errorf("connection %s no longer exists (it may have been deleted and created again)", name)
	case err != nil:
		return nil, http.StatusServiceUnavailable, fmt.Errorf("cannot read connection %s right now; try again", name)
	case conn.Spec.GrantType != snowv1.GrantAuthorizationCode:
		return nil, http.StatusConflict, fmt.Errorf("connection %s no longer uses the AuthorizationCode grant", name)
	}

	secret, err := credentials.Get(ctx, s.APIReader, conn)
	if err != nil || secret == nil {
		return nil, http.StatusConflict, fmt.Errorf("the credentials Secret of connection %s cannot be read", name)
	}
	if secret.ResourceVersion != st.CredentialsVersion {
		s.event(conn, corev1.EventTypeWarning, "AuthorizationFailed", "the credentials Secret changed during an authorization; open the new authorization link")
		return nil, http.StatusConflict, fmt.Errorf("the credentials of connection %s changed since this link was made: open its new authorization link", name)
	}
	creds, err := credentials.Parse(conn, secret, s.Tokens)
	if err != nil {
		return nil, http.StatusConflict, fmt.Errorf("connection %s: %s", name, err.Error())
	}

	stored := &corev1.Secret{}
	err = s.APIReader.Get(ctx, types.NamespacedName{Namespace: conn.Namespace, Name: conn.RefreshTokenSecretName()}, stored)
	if err == nil && stored.Annotations[snowv1.AnnotationAuthorizationNonce] == st.Nonce {
		return nil, http.StatusConflict, fmt.Errorf("this authorization link of connection %s was used already: open its current link", name)
	}
	return &flow{state: st, raw: raw, conn: conn, instance: creds.Instance, creds: creds.Client}, 0, nil
}

// storeRefreshToken writes the connection's refresh-token Secret: owned by
// the connection (so the reconciler hears of it and it goes with the
// connection), labelled as snowauth's, carrying the nonce it answers.
func (s *Server) storeRefreshToken(ctx context.Context, f *flow, refreshToken string, now time.Time) error {
	key := types.NamespacedName{Namespace: f.conn.Namespace, Name: f.conn.RefreshTokenSecretName()}
	secret := &corev1.Secret{}
	err := s.APIReader.Get(ctx, key, secret)
	exists := err == nil
	switch {
	case apierrors.IsNotFound(err):
		secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	case err != nil:
		return err
	case !metav1.IsControlledBy(secret, f.conn):
		return fmt.Errorf("secret %s exists and is not controlled by the connection; delete it", key.Name)
	}
	secret.Type = corev1.SecretTypeOpaque
	secret.Data = map[string][]byte{
		RefreshTokenKey: []byte(refreshToken),
		IssuedAtKey:     []byte(now.UTC().Format(time.RFC3339)),
	}
	secret.Labels = map[string]string{snowv1.LabelManagedBy: snowv1.ManagedByValue, snowv1.LabelConnection: f.conn.Name}
	secret.Annotations = map[string]string{snowv1.AnnotationAuthorizationNonce: f.state.Nonce}
	if err := controllerutil.SetControllerReference(f.conn, secret, s.Client.Scheme()); err != nil {
		return err
	}
	if exists {
		return s.Client.Update(ctx, secret)
	}
	return s.Client.Create(ctx, secret)
}

func (s *Server) event(conn *snowv1.ServiceNowConnection, typ, reason, note string, args ...any) {
	if s.Recorder != nil {
		s.Recorder.Eventf(conn, nil, typ, reason, "Authorize", note, args...)
	}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// clean keeps a value taken from the query short and printable before it is
// shown or recorded.
func clean(v string) string {
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
	if len(v) > 64 {
		v = v[:64] + "…"
	}
	return v
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>snowauth: {{.Title}}</title></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

// page answers a short plain page. html/template escapes everything, so
// nothing from the query is reflected unescaped.
func page(w http.ResponseWriter, status int, title, message string) {
	noStore(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, struct{ Title, Message string }{title, message})
}

// noStore keeps browsers and proxies from storing pages or redirects that
// carry a state, and from leaking it in a Referer header.
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("Referrer-Policy", "no-referrer")
}
