package authserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// InstanceResolver checks an instance URL against the operator's allowlist
// (a *servicenow.Client, which the server uses for nothing else).
type InstanceResolver interface {
	ResolveInstance(instance string) (servicenow.Instance, error)
}

// Server answers the start link, the person's go-ahead and the callback.
// It holds no credentials and reads none: it reads connections (for their
// status.authorization) and creates hand-over Secrets in its own
// namespace, which the manager consumes.
type Server struct {
	// Reader reads connections from the API server; Writer creates the
	// hand-over Secrets in Namespace.
	Reader    client.Reader
	Writer    client.Writer
	Namespace string
	Links     *Links
	Instances InstanceResolver
	// Addr is the listen address, e.g. ":8082".
	Addr string
	// Now defaults to time.Now.
	Now func() time.Time
	// Wait bounds how long the callback page waits for the manager's
	// answer; 25 s when zero. Poll is how often it looks; 250 ms when zero.
	Wait, Poll time.Duration

	limits *limits
}

// Start serves until ctx ends. It implements manager.Runnable.
func (s *Server) Start(ctx context.Context) error {
	srv := &http.Server{
		Addr:              s.Addr,
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second, // a callback waits for the manager
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

// Handler returns the server's routes, under the external URL's path.
func (s *Server) Handler() http.Handler {
	if s.limits == nil {
		s.limits = newLimits()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+s.Links.path("authorize"), s.verified(s.confirm))
	mux.HandleFunc("POST "+s.Links.path("authorize"), s.verified(s.authorize))
	mux.HandleFunc("GET "+s.Links.path("callback"), s.verified(s.callback))
	mux.HandleFunc("GET "+s.Links.path("jwks/{namespace}/{file}"), s.jwks)
	mux.HandleFunc("GET "+s.Links.path("healthz"), func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	// The go-ahead is a POST from the server's own page: a form another
	// site submits (to walk a logged-in ServiceNow user through consent
	// for an attacker's link) is refused (Sec-Fetch-Site, Origin).
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		page(w, http.StatusForbidden, "Cannot go on", "The request came from another site. Open the authorization link yourself and go on from its page.")
	}))
	return csrf.Handler(mux)
}

// flow is a verified state, the link it is, and its connection.
type flow struct {
	state  State
	raw    string
	linkID string
	signer *Signer
	conn   *snowv1.ServiceNowConnection
}

// verified checks the state's signature first (a request without a state
// snowauth signed costs one HMAC and nothing else), then the rate limits
// of its connection and of the client's address, then that the link is
// the connection's current one.
func (s *Server) verified(h func(http.ResponseWriter, *http.Request, *flow)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		raw := r.FormValue("state")
		if raw == "" {
			page(w, http.StatusBadRequest, "Cannot go on", "The request carries no state: open the authorization link you were given.")
			return
		}
		signer, err := s.Links.Keys.Signer(r.Context())
		if err != nil {
			page(w, http.StatusServiceUnavailable, "Cannot go on", "The authorization server cannot read its keys right now; try again in a minute.")
			return
		}
		st, err := signer.Verify(raw, s.now())
		if err != nil {
			page(w, http.StatusBadRequest, "Cannot go on", err.Error()+": ask for a new link (kubectl servicenow authorize).")
			return
		}
		if !s.limits.allow(st.Namespace+"/"+st.Name, clientAddress(r), s.now()) {
			w.Header().Set("Retry-After", "2")
			page(w, http.StatusTooManyRequests, "Too many requests", "Too many requests for this connection or from this address. Try again in a moment.")
			return
		}
		f := &flow{state: st, raw: raw, linkID: LinkID(st.Nonce), signer: signer}
		if status, err := s.current(r.Context(), f); err != nil {
			page(w, status, "This link does not work", err.Error())
			return
		}
		h(w, r, f)
	}
}

// current reads the link's connection and checks that the link is its
// newest, unused one.
func (s *Server) current(ctx context.Context, f *flow) (int, error) {
	st, name := f.state, f.state.Namespace+"/"+f.state.Name
	conn := &snowv1.ServiceNowConnection{}
	err := s.Reader.Get(ctx, types.NamespacedName{Namespace: st.Namespace, Name: st.Name}, conn)
	switch {
	case apierrors.IsNotFound(err) || err == nil && string(conn.UID) != st.UID:
		return http.StatusGone, fmt.Errorf("connection %s no longer exists (it may have been deleted and created again)", name)
	case err != nil:
		return http.StatusServiceUnavailable, fmt.Errorf("cannot read connection %s right now; try again", name)
	case conn.Spec.GrantType != snowv1.GrantAuthorizationCode:
		return http.StatusConflict, fmt.Errorf("connection %s no longer uses the AuthorizationCode grant", name)
	}
	f.conn = conn
	a := conn.Status.Authorization
	switch {
	case a != nil && a.CompletedLinkID == f.linkID:
		return http.StatusConflict, fmt.Errorf("this link was used already: connection %s was authorised%s. A link works once", name, byWhom(a))
	case a == nil || a.LinkID != f.linkID:
		return http.StatusConflict, fmt.Errorf("a newer link was made for connection %s, or this one was withdrawn: only the newest link works. "+
			"Ask for a new one (kubectl servicenow authorize %s -n %s)", name, st.Name, st.Namespace)
	}
	return 0, nil
}

func byWhom(a *snowv1.AuthorizationStatus) string {
	var b strings.Builder
	if a.AuthorizedBy != "" {
		fmt.Fprintf(&b, " by ServiceNow user %s", a.AuthorizedBy)
	}
	if a.AuthorizedAt != nil {
		fmt.Fprintf(&b, " at %s", a.AuthorizedAt.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// confirm is the page a start link opens: it names what is about to be
// authorised and asks the person to go on. Nothing happens without that
// click, so a link opened by mistake (or by a link preview) does nothing.
func (s *Server) confirm(w http.ResponseWriter, _ *http.Request, f *flow) {
	instance, err := s.Instances.ResolveInstance(f.state.Instance)
	if err != nil {
		page(w, http.StatusConflict, "Cannot go on", "The connection's instance is not allowed: "+err.Error())
		return
	}
	noStore(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_ = confirmTemplate.Execute(w, struct {
		Namespace, Name, Host, Secret, Action, State, Expires string
	}{
		f.state.Namespace, f.state.Name, instance.URL().Host, f.conn.TokenSecretName(), s.Links.path("authorize"), f.raw,
		time.Unix(f.state.Expires, 0).UTC().Format(time.RFC3339),
	})
}

// authorize, on the person's go-ahead, binds the flow to this browser (a
// cookie only the authorization server can compute) and sends the browser
// to the connection's own instance's login page, with PKCE.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, f *flow) {
	instance, err := s.Instances.ResolveInstance(f.state.Instance)
	if err != nil {
		page(w, http.StatusConflict, "Cannot go on", "The connection's instance is not allowed: "+err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(f.linkID), Value: f.signer.BrowserBinding(f.state), Path: "/",
		Expires: time.Unix(f.state.Expires, 0), Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	challenge := servicenow.S256Challenge(f.signer.CodeVerifier(f.state))
	noStore(w)
	http.Redirect(w, r, servicenow.AuthCodeURL(instance, f.state.ClientID, s.Links.RedirectURI(), f.raw, challenge), http.StatusSeeOther)
}

// cookieName is per link, so two authorizations in one browser do not
// undo each other. __Host-: set only over HTTPS, for this host alone.
func cookieName(linkID string) string { return "__Host-snowauth-" + linkID }

// callback hands the code (or ServiceNow's error) to the manager in a
// Secret of the server's namespace and waits for the manager's answer.
func (s *Server) callback(w http.ResponseWriter, r *http.Request, f *flow) {
	log := logf.FromContext(r.Context()).WithName("authserver")
	name := f.state.Namespace + "/" + f.state.Name
	cookie, err := r.Cookie(cookieName(f.linkID))
	if err != nil || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(f.signer.BrowserBinding(f.state))) != 1 {
		page(w, http.StatusForbidden, "Authorization refused",
			"This browser did not start the authorization of connection "+name+". Open the link in the browser you log in to ServiceNow with, and go on from there.")
		return
	}
	q := r.URL.Query()
	data := map[string][]byte{HandoverState: []byte(f.raw)}
	switch code, e := q.Get("code"), q.Get("error"); {
	case e != "":
		data[HandoverError] = []byte(clean(e))
	case code != "":
		data[HandoverCode] = []byte(code)
	default:
		page(w, http.StatusBadRequest, "Authorization failed", "The callback carries no authorization code. Ask for a new link.")
		return
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: HandoverSecretName(f.linkID), Labels: map[string]string{
			snowv1.LabelManagedBy: snowv1.ManagedByValue, LabelHandover: "true",
		}},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}
	// The code goes on a context of its own: a browser that gives up
	// waiting must not lose the authorization.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := s.Writer.Create(ctx, secret); err != nil {
		if apierrors.IsAlreadyExists(err) {
			page(w, http.StatusConflict, "This link was used already", "Connection "+name+" is being authorised from this link already. A link works once.")
			return
		}
		log.Error(err, "handing the authorization over to the manager", "connection", name)
		page(w, http.StatusServiceUnavailable, "Authorization failed", "The authorization could not be handed to snowauth right now. Ask for a new link and try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(f.linkID), Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	log.Info("authorization handed over", "connection", name, "link", f.linkID)
	s.awaitManager(w, r.Context(), f)
}

// awaitManager shows the manager's answer: the connection's status says
// which link completed or failed.
func (s *Server) awaitManager(w http.ResponseWriter, ctx context.Context, f *flow) {
	name := f.state.Namespace + "/" + f.state.Name
	wait, poll := s.Wait, s.Poll
	if wait <= 0 {
		wait = 25 * time.Second
	}
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		conn := &snowv1.ServiceNowConnection{}
		if err := s.Reader.Get(ctx, types.NamespacedName{Namespace: f.state.Namespace, Name: f.state.Name}, conn); err == nil {
			if a := conn.Status.Authorization; a != nil && a.CompletedLinkID == f.linkID {
				page(w, http.StatusOK, "Connection authorised",
					fmt.Sprintf("Connection %s is authorised%s. snowauth now keeps its token fresh; you can close this window.", name, byWhom(a)))
				return
			} else if a != nil && a.FailedLinkID == f.linkID {
				page(w, http.StatusBadGateway, "Authorization failed",
					fmt.Sprintf("Connection %s was not authorised: %s Ask for a new link and try again.", name, a.FailureMessage))
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			page(w, http.StatusAccepted, "Authorization received",
				fmt.Sprintf("snowauth received the authorization of connection %s and is completing it. "+
					"See kubectl servicenow status %s -n %s.", name, f.state.Name, f.state.Namespace))
			return
		case <-tick.C:
		}
	}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// clientAddress is the request's peer address (behind an Ingress: the
// Ingress controller's).
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
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

var confirmTemplate = template.Must(template.New("confirm").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>snowauth: authorise {{.Namespace}}/{{.Name}}</title></head>
<body><h1>Authorise snowauth at {{.Host}}?</h1>
<p>Connection <b>{{.Name}}</b> in namespace <b>{{.Namespace}}</b> asks to act at the ServiceNow instance
<b>{{.Host}}</b> as the ServiceNow user you log in as next. Its tokens go to Secret <b>{{.Secret}}</b>,
which workloads in {{.Namespace}} can mount.</p>
<p>Go on only if you asked for this link (kubectl servicenow authorize) and mean to authorise this connection.
The link works once, until {{.Expires}}.</p>
<form method="post" action="{{.Action}}"><input type="hidden" name="state" value="{{.State}}">
<button type="submit">Continue to {{.Host}}</button></form></body></html>
`))

// page answers a short plain page. html/template escapes everything, so
// nothing from the query is reflected unescaped.
func page(w http.ResponseWriter, status int, title, message string) {
	noStore(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
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

// errNoHandover is returned by ReadHandover for a Secret that is not one.
var errNoHandover = errors.New("not an authorization hand-over")
