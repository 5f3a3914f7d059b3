package authserver

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limits are the server's rate limits, checked once a request's state is
// known to be snowauth's: per connection (what one link can cost the
// connection's instance and the API server) and per client address. An
// unauthenticated flood never reaches them, so it cannot use up anyone's
// budget. Their maps are bounded: past maxTracked keys they start afresh.
type limits struct {
	mu          sync.Mutex
	connections map[string]*rate.Limiter
	clients     map[string]*rate.Limiter
	anonymous   *rate.Limiter
}

const maxTracked = 10000

var (
	perConnection = rate.Limit(2) // per second
	connBurst     = 10
	perClient     = rate.Limit(5)
	clientBurst   = 30
)

func newLimits() *limits {
	return &limits{connections: map[string]*rate.Limiter{}, clients: map[string]*rate.Limiter{},
		anonymous: rate.NewLimiter(jwksPerSecond, jwksBurst)}
}

// allow spends one request of the connection's budget and the client's.
func (l *limits) allow(connection, client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := limiter(&l.connections, connection, perConnection, connBurst)
	a := limiter(&l.clients, client, perClient, clientBurst)
	if c.TokensAt(now) < 1 || a.TokensAt(now) < 1 {
		return false
	}
	return c.AllowN(now, 1) && a.AllowN(now, 1)
}

func limiter(m *map[string]*rate.Limiter, key string, r rate.Limit, burst int) *rate.Limiter {
	if l, ok := (*m)[key]; ok {
		return l
	}
	if len(*m) >= maxTracked {
		*m = map[string]*rate.Limiter{}
	}
	l := rate.NewLimiter(r, burst)
	(*m)[key] = l
	return l
}

// allowAnonymous spends one request of the budget all anonymous requests
// (the JWKS documents) share, and the client's: whatever names they ask
// for, they cost the API server at most that many reads.
func (l *limits) allowAnonymous(client string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := limiter(&l.clients, client, perClient, clientBurst)
	if l.anonymous.TokensAt(now) < 1 || a.TokensAt(now) < 1 {
		return false
	}
	return l.anonymous.AllowN(now, 1) && a.AllowN(now, 1)
}
