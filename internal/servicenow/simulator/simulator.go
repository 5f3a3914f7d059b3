package simulator

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// ServiceNow's defaults for a new OAuth registry record (oauth_entity).
const (
	DefaultAccessTokenLifespan  = 30 * time.Minute
	DefaultRefreshTokenLifespan = 100 * 24 * time.Hour // 8,640,000 s
)

// Grant types, as sent in grant_type.
const (
	GrantPassword          = "password"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantAuthorizationCode = "authorization_code"
)

// defaultGrants are what a classic "OAuth API endpoint for external clients"
// accepts. client_credentials still needs the system property and an
// application user. GrantJWTBearer is not among them: it needs a JWT
// configuration (OAuthClient.JWT), which adds it.
var defaultGrants = []string{GrantPassword, GrantRefreshToken, GrantClientCredentials, GrantAuthorizationCode}

// Options configure a Simulator. The zero value serves on a random loopback
// port with ServiceNow's default lifespans.
type Options struct {
	// Addr is the listen address; default "127.0.0.1:0" (a free port).
	Addr string
	// CertificateHosts are the names and IP addresses the serving
	// certificate is valid for; default localhost and 127.0.0.1. Set it to
	// something else to script a certificate for the wrong host.
	CertificateHosts []string
	// AccessTokenLifespan and RefreshTokenLifespan apply to clients that do
	// not set their own; defaults 30 minutes and 100 days.
	AccessTokenLifespan, RefreshTokenLifespan time.Duration
	// ClientCredentialsEnabled is the system property
	// glide.oauth.inbound.client.credential.grant_type.enabled (false on a
	// real instance until an administrator creates it).
	ClientCredentialsEnabled bool
	// JWKSClient fetches the JWKS documents of JWT bearer configurations
	// (JWTVerifier.JWKSURL); default an http.Client with a 10 s timeout.
	JWKSClient *http.Client
	// Logf, if set, receives one line per request. It never receives
	// secrets or tokens.
	Logf func(format string, args ...any)
}

// OAuthClient is an OAuth registry record ("OAuth API endpoint for external
// clients").
type OAuthClient struct {
	ID, Secret string
	// Grants are the grant_type values the client may use; nil means every
	// grant a classic registry record allows (password, refresh_token,
	// authorization_code, client_credentials), plus GrantJWTBearer when JWT
	// is set. GrantJWTBearer is refused without JWT whatever Grants says.
	Grants []string
	// ApplicationUser is the username of the record's OAuth Application
	// User. client_credentials needs it (a registered, active user) and
	// Options.ClientCredentialsEnabled; tokens act as that user.
	ApplicationUser string
	// RedirectURL is the record's Redirect URL. oauth_auth.do requires
	// redirect_uri to equal it exactly, and refuses every request (with a
	// 400 page, never a redirect) while it is empty.
	RedirectURL string
	// Inactive registry records reject every request.
	Inactive bool
	// AccessTokenLifespan and RefreshTokenLifespan override the simulator's
	// lifespans for this client when non-zero, as the registry record's
	// fields do.
	AccessTokenLifespan, RefreshTokenLifespan time.Duration
	// JWT is the record's JWT bearer configuration (GrantJWTBearer); nil
	// for a record without one.
	JWT *JWTVerifier
}

// accepts reports whether c may use grant.
func (c OAuthClient) accepts(grant string) bool {
	if grant == GrantJWTBearer {
		return c.JWT != nil && (c.Grants == nil || slices.Contains(c.Grants, grant))
	}
	grants := c.Grants
	if grants == nil {
		grants = defaultGrants
	}
	return slices.Contains(grants, grant)
}

// User is a sys_user record.
type User struct {
	Username, Password string
	// Inactive users (active=false) cannot get tokens, and their tokens
	// stop working on the Table API.
	Inactive bool
}

// TokenRequestRecord is one request that reached POST /oauth_token.do,
// whatever its outcome. It holds no secrets.
type TokenRequestRecord struct {
	ClientID, Grant, Username string
	Time                      time.Time // simulator clock
	Status                    int       // HTTP status answered; 0 when hung or dropped
	Fault                     FaultKind // the fault that answered, if any
	// Rejection says why a jwt-bearer request got its 401, which tells
	// the client nothing: one of "client" (unknown or inactive client, or
	// wrong secret), "grant not allowed", "malformed assertion", "alg" (not
	// RS256 or ES256), "unknown kid", "bad signature", "iss", "aud",
	// "no exp", "expired", "not yet valid" (nbf), "iat in the future",
	// "no jti", "jti reused", "unknown user" (sub is no active user),
	// "jwks fetch failed", "jwks malformed" or "jwks has private keys".
	// Empty otherwise. It never holds the assertion or a secret.
	Rejection string
}

// The kinds of token a RevocationRecord names.
const (
	RevokedAccessToken  = "access"
	RevokedRefreshToken = "refresh"
)

// RevocationRecord is one request that reached /oauth_revoke_token.do,
// whatever its outcome. It holds no token.
type RevocationRecord struct {
	// Kind is RevokedAccessToken or RevokedRefreshToken for a token the
	// simulator issued, "" for any other token (or none); ClientID and
	// Username say whose token it was.
	Kind, ClientID, Username string
	// Method is the HTTP method; InQuery says the token came in the URL's
	// query (as ServiceNow's documentation shows it) rather than in a
	// form body.
	Method  string
	InQuery bool
	Time    time.Time // simulator clock
	Status  int       // HTTP status answered; 0 when hung or dropped
	Fault   FaultKind // the fault that answered, if any
	// Revoked says the request marked a valid token expired: false for an
	// unknown token, one already expired or revoked, and a faulted request.
	Revoked bool
}

// Simulator is a ServiceNow instance on loopback, speaking HTTPS with its own
// CA. All methods are safe for concurrent use, including while requests are
// being served.
type Simulator struct {
	ca      *certificateAuthority
	hosts   []string // the certificate's names and addresses
	srv     *http.Server
	url     string
	logf    func(format string, args ...any)
	mux     *http.ServeMux
	closing chan struct{} // closed by Close: ends hangs and waits

	mu              sync.Mutex // guards the fields up to logMu
	closed          bool
	inflight        sync.WaitGroup // handlers running; Add only under mu while !closed
	offset          time.Duration  // added to the real clock by Advance
	accessLifespan  time.Duration
	refreshLifespan time.Duration
	ccEnabled       bool
	clients         map[string]OAuthClient
	users           map[string]*user
	tokens          map[string]*token
	sessions        map[sessionKey]*session
	codes           map[string]*authCode
	fault           *Fault
	jwksClient      *http.Client // set once by Start
	jwksCache       map[string]*jwksEntry
	jwksFetches     map[string]int
	jtis            map[string]map[string]time.Time // client ID -> jti -> remembered until
	tables          map[string]TableAccess          // table -> how its Table API answers
	tableRequests   map[string]int                  // table -> GETs that reached the Table API
	rateLimit       RateLimitRule
	rateCounts      map[string]*rateWindow // username -> this hour's requests

	// logMu guards requests on its own: records are updated while a
	// response is being written, which serveToken does holding mu.
	logMu       sync.Mutex
	requests    []TokenRequestRecord
	revocations []RevocationRecord
}

type user struct {
	User
	sysID string
}

// New starts a simulator and panics if it cannot, like httptest.NewServer:
// meant for tests. Programs should use Start.
func New(opts Options) *Simulator {
	s, err := Start(opts)
	if err != nil {
		panic(fmt.Sprintf("servicenow simulator: %v", err))
	}
	return s
}

// Start starts a simulator serving HTTPS on opts.Addr. Call Close when done.
func Start(opts Options) (*Simulator, error) {
	hosts := opts.CertificateHosts
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	ca, err := newCertificateAuthority(hosts)
	if err != nil {
		return nil, fmt.Errorf("creating the CA: %w", err)
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Simulator{
		ca:              ca,
		hosts:           slices.Clone(hosts),
		logf:            opts.Logf,
		closing:         make(chan struct{}),
		accessLifespan:  orDefault(opts.AccessTokenLifespan, DefaultAccessTokenLifespan),
		refreshLifespan: orDefault(opts.RefreshTokenLifespan, DefaultRefreshTokenLifespan),
		ccEnabled:       opts.ClientCredentialsEnabled,
		clients:         map[string]OAuthClient{},
		users:           map[string]*user{},
		tokens:          map[string]*token{},
		sessions:        map[sessionKey]*session{},
		codes:           map[string]*authCode{},
		jwksClient:      opts.JWKSClient,
		jwksCache:       map[string]*jwksEntry{},
		jwksFetches:     map[string]int{},
		jtis:            map[string]map[string]time.Time{},
		tables:          map[string]TableAccess{},
		tableRequests:   map[string]int{},
		rateCounts:      map[string]*rateWindow{},
		url:             "https://" + urlHost(ln.Addr()),
	}
	if s.jwksClient == nil {
		s.jwksClient = &http.Client{Timeout: defaultJWKSTimeout}
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/oauth_token.do", s.serveToken)
	s.mux.HandleFunc("/oauth_auth.do", s.serveAuth)
	s.mux.HandleFunc("/oauth_revoke_token.do", s.serveRevoke)
	s.mux.HandleFunc("/api/now/table/{table}", s.serveTable)
	s.mux.HandleFunc("/api/now/{version}/table/{table}", s.serveTable)
	s.mux.HandleFunc("GET /api/now/ui/user/current_user", s.serveCurrentUser)
	s.srv = &http.Server{
		Handler: s,
		// HTTP/1.1 only: the dropped-connection fault hijacks the
		// connection, which HTTP/2 cannot do.
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{ca.leaf}, NextProtos: []string{"http/1.1"}},
		ReadHeaderTimeout: 10 * time.Second,
		// Handshake failures are what TLS tests provoke on purpose.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go func() { _ = s.srv.Serve(tls.NewListener(ln, s.srv.TLSConfig)) }()
	return s, nil
}

func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// urlHost turns the listener's address into a URL host, naming an
// unspecified address (listening on all interfaces) localhost.
func urlHost(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if tcp.IP.IsUnspecified() {
		return fmt.Sprintf("localhost:%d", tcp.Port)
	}
	return tcp.String()
}

// URL is the instance's base URL, https://127.0.0.1:PORT. The certificate is
// also valid for https://localhost:PORT.
func (s *Simulator) URL() string { return s.url }

// LocalhostURL is URL with the host name localhost instead of 127.0.0.1:
// the form to give a client whose allowlist holds domain suffixes, as
// snowauth's does (an IP address matches no domain, as with real instances).
func (s *Simulator) LocalhostURL() string { return strings.Replace(s.url, "127.0.0.1", "localhost", 1) }

// CACertPEM is the simulator's CA certificate, for a client's CA bundle.
func (s *Simulator) CACertPEM() []byte { return slices.Clone(s.ca.caPEM) }

// CertPool holds only the simulator's CA.
func (s *Simulator) CertPool() *x509.CertPool { return s.ca.pool.Clone() }

// Close stops the simulator. It ends hung and delayed requests instead of
// waiting for them, then waits for every handler to return.
func (s *Simulator) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	// Connections first, then the handlers: a hung handler woken while its
	// connection is still open would let net/http send an empty 200.
	_ = s.srv.Close()
	close(s.closing)
	s.inflight.Wait()
}

// Now is the simulator's clock: the real time plus everything Advance added.
// Token lifetimes, expires_in and rate-limit reset times follow it.
func (s *Simulator) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

func (s *Simulator) now() time.Time { return time.Now().Add(s.offset) }

// Advance moves the simulator's clock forward by d, for example past an
// access token's expiry or a refresh token's 100 days. It panics if d is
// negative: ServiceNow's clock does not go back, and revocation relies on it.
func (s *Simulator) Advance(d time.Duration) {
	if d < 0 {
		panic("simulator: Advance with a negative duration")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
}

// AddClient registers an OAuth client, replacing any with the same ID (to
// rotate its secret, change its grants or deactivate it).
func (s *Simulator) AddClient(c OAuthClient) {
	if c.ID == "" {
		panic("simulator: OAuthClient without an ID")
	}
	c.Grants = slices.Clone(c.Grants)
	c.JWT = c.JWT.clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = c
}

// AddUser registers a user, replacing any with the same username (to change
// its password or deactivate it). Existing tokens survive, as on a real
// instance, but stop working once the user is inactive.
func (s *Simulator) AddUser(u User) {
	if u.Username == "" {
		panic("simulator: User without a Username")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sysID := randomHex(16)
	if old, ok := s.users[u.Username]; ok {
		sysID = old.sysID
	}
	s.users[u.Username] = &user{User: u, sysID: sysID}
}

// SetClientCredentialsEnabled sets the system property
// glide.oauth.inbound.client.credential.grant_type.enabled.
func (s *Simulator) SetClientCredentialsEnabled(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ccEnabled = enabled
}

// SetAccessTokenLifespan changes the default access token lifespan for tokens
// issued or extended from now on.
func (s *Simulator) SetAccessTokenLifespan(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accessLifespan = orDefault(d, DefaultAccessTokenLifespan)
}

// SetRefreshTokenLifespan changes the default refresh token lifespan for
// tokens issued or extended from now on.
func (s *Simulator) SetRefreshTokenLifespan(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshLifespan = orDefault(d, DefaultRefreshTokenLifespan)
}

// TokenRequests counts the requests to POST /oauth_token.do from clientID
// with grant (either may be "" to count all), whatever their outcome,
// including those a fault answered.
func (s *Simulator) TokenRequests(clientID, grant string) int {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	n := 0
	for _, r := range s.requests {
		if (clientID == "" || r.ClientID == clientID) && (grant == "" || r.Grant == grant) {
			n++
		}
	}
	return n
}

// TokenRequestLog returns every request to POST /oauth_token.do so far, oldest
// first.
func (s *Simulator) TokenRequestLog() []TokenRequestRecord {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return slices.Clone(s.requests)
}

// IssueRefreshToken gives username a refresh token for clientID as a
// password grant would (the current one, extended, or a new one), without an
// HTTP request and without counting one: a shortcut for tests of the
// refresh_token grant.
func (s *Simulator) IssueRefreshToken(clientID, username string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[clientID]
	if !ok {
		return "", fmt.Errorf("no OAuth client %q", clientID)
	}
	if _, ok := s.users[username]; !ok {
		return "", fmt.Errorf("no user %q", username)
	}
	now := s.now()
	sess := s.session(sessionKey{clientID: clientID, username: username})
	return s.currentRefresh(sess, c, username, now).value, nil
}

// RevokeToken marks an access or refresh token expired, as
// /oauth_revoke_token.do does, without an HTTP request and without
// recording a revocation.
func (s *Simulator) RevokeToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoke(tok)
}

// Revocations counts the requests to /oauth_revoke_token.do that revoked a
// valid token of kind (RevokedAccessToken or RevokedRefreshToken; "" counts
// both).
func (s *Simulator) Revocations(kind string) int {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	n := 0
	for _, r := range s.revocations {
		if r.Revoked && (kind == "" || r.Kind == kind) {
			n++
		}
	}
	return n
}

// RevocationLog returns every request to /oauth_revoke_token.do so far,
// oldest first, faulted ones included.
func (s *Simulator) RevocationLog() []RevocationRecord {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return slices.Clone(s.revocations)
}

// TokenExpiry reports when a token issued by the simulator expires (or was
// revoked); ok is false for a token it never issued.
func (s *Simulator) TokenExpiry(tok string) (expiry time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	if !ok {
		return time.Time{}, false
	}
	return t.expiry, true
}

// ServeHTTP applies the current fault, if any, then serves ServiceNow's
// endpoints. It records every token request.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.inflight.Done()

	rec, revocation := -1, -1
	switch r.URL.Path {
	case "/oauth_revoke_token.do":
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		_ = r.ParseForm()
		revocation = s.recordRevocation(r)
		r = r.WithContext(context.WithValue(r.Context(), revocationKey{}, revocation))
	case "/oauth_token.do":
		// Parse before any fault so that faulted requests are counted
		// per client and grant too. Only the body counts, as on
		// instances where glide.oauth.allow.parameters.in.post.body.only
		// is true (all new ones).
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		_ = r.ParseForm()
		rec = s.record(TokenRequestRecord{
			ClientID: r.PostForm.Get("client_id"),
			Grant:    r.PostForm.Get("grant_type"),
			Username: r.PostForm.Get("username"),
		})
		r = r.WithContext(context.WithValue(r.Context(), recordKey{}, rec))
	}

	// The record is updated before the answer leaves, so that a test
	// reading it right after its request returns sees the outcome.
	sw := &statusWriter{ResponseWriter: w, onStatus: func(status int) {
		s.setStatus(rec, status)
		s.updateRevocation(revocation, func(rr *RevocationRecord) { rr.Status = status })
	}}
	fault, handled := s.serveFault(sw, r, func(kind FaultKind) {
		s.setFault(rec, kind)
		s.updateRevocation(revocation, func(rr *RevocationRecord) { rr.Fault = kind })
	})
	if !handled {
		s.mux.ServeHTTP(sw, r)
	}
	if s.logf != nil {
		s.logf("%s %s -> %d%s", r.Method, r.URL.Path, sw.status, s.describe(rec, revocation, fault))
	}
}

// describe renders a request's client, grant (or the kind of token it
// revokes) and fault for Logf; never secrets.
func (s *Simulator) describe(rec, revocation int, fault FaultKind) string {
	out := ""
	if rec >= 0 {
		s.logMu.Lock()
		r := s.requests[rec]
		s.logMu.Unlock()
		out = fmt.Sprintf(" client=%q grant=%q", r.ClientID, r.Grant)
	}
	if revocation >= 0 {
		s.logMu.Lock()
		r := s.revocations[revocation]
		s.logMu.Unlock()
		out = fmt.Sprintf(" client=%q token=%q", r.ClientID, cmp.Or(r.Kind, "unknown"))
	}
	if fault != "" {
		out += fmt.Sprintf(" fault=%s", fault)
	}
	return out
}

func (s *Simulator) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.inflight.Add(1)
	return true
}

func (s *Simulator) record(r TokenRequestRecord) int {
	r.Time = s.Now()
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.requests = append(s.requests, r)
	return len(s.requests) - 1
}

// recordRevocation records a request to /oauth_revoke_token.do (its form
// parsed): which token it names, never the token.
func (s *Simulator) recordRevocation(r *http.Request) int {
	rec := RevocationRecord{Method: r.Method, InQuery: r.URL.Query().Has("token"), Time: s.Now()}
	s.mu.Lock()
	if t, ok := s.tokens[r.Form.Get("token")]; ok {
		rec.Kind, rec.ClientID, rec.Username = RevokedAccessToken, t.clientID, t.username
		if t.refresh {
			rec.Kind = RevokedRefreshToken
		}
	}
	s.mu.Unlock()
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.revocations = append(s.revocations, rec)
	return len(s.revocations) - 1
}

// revocationKey holds, in a revocation's context, the index of its
// RevocationRecord.
type revocationKey struct{}

// updateRevocation applies f to revocation record i, if there is one.
func (s *Simulator) updateRevocation(i int, f func(*RevocationRecord)) {
	if i < 0 {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	f(&s.revocations[i])
}

// recordKey holds, in a token request's context, the index of its
// TokenRequestRecord, for handlers to add what only they know.
type recordKey struct{}

// updateRecord applies f to r's TokenRequestRecord, if it has one.
func (s *Simulator) updateRecord(r *http.Request, f func(*TokenRequestRecord)) {
	rec, ok := r.Context().Value(recordKey{}).(int)
	if !ok {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	f(&s.requests[rec])
}

func (s *Simulator) setStatus(rec, status int) {
	if rec < 0 {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.requests[rec].Status = status
}

func (s *Simulator) setFault(rec int, kind FaultKind) {
	if rec < 0 {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.requests[rec].Fault = kind
}

// statusWriter reports the status before it is written, and still lets
// faults hijack the connection.
type statusWriter struct {
	http.ResponseWriter
	status   int
	onStatus func(int)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.onStatus(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// hijack closes the underlying connection without an answer.
func (w *statusWriter) hijack() error {
	conn, _, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return err
	}
	return conn.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
