package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// maxKeptTokens bounds the tokens kept in memory. Each is a few hundred
// bytes; past the bound the one that expires first makes room.
const maxKeptTokens = 4096

// keptToken is a token obtained from ServiceNow that could not be stored
// yet (the API server refused the token Secret). The next try writes it
// instead of asking ServiceNow again.
type keptToken struct {
	// credentialsVersion and generation say which inputs it was obtained
	// from: a change to either makes it useless.
	credentialsVersion string
	generation         int64
	accessToken        string
	instanceURL        string
	obtained, expiry   time.Time
}

// keptTokens holds at most one kept token per connection UID (a connection
// deleted and created again has a new UID), dropped at its expiry.
type keptTokens struct {
	mu sync.Mutex
	m  map[types.UID]keptToken
}

// put keeps tok for uid, replacing an older one, and forgets the tokens
// that expired (of connections deleted meanwhile, say).
func (k *keptTokens) put(uid types.UID, tok keptToken, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[types.UID]keptToken{}
	}
	for id, t := range k.m {
		if !now.Before(t.expiry) {
			delete(k.m, id)
		}
	}
	makeRoom(k.m, uid, func(t keptToken) time.Time { return t.expiry })
	k.m[uid] = tok
}

// makeRoom bounds m at maxKeptTokens entries: when it is full and uid is
// new, the entry that ends first goes.
func makeRoom[V any](m map[types.UID]V, uid types.UID, end func(V) time.Time) {
	if _, ok := m[uid]; ok || len(m) < maxKeptTokens {
		return
	}
	var first types.UID
	for id, v := range m {
		if first == "" || end(v).Before(end(m[first])) {
			first = id
		}
	}
	delete(m, first)
}

// get returns the token kept for uid if it was obtained from these inputs
// and is valid at now. Anything else kept for uid is dropped.
func (k *keptTokens) get(uid types.UID, credentialsVersion string, generation int64, now time.Time) (keptToken, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	tok, ok := k.m[uid]
	if !ok {
		return keptToken{}, false
	}
	if tok.credentialsVersion != credentialsVersion || tok.generation != generation || !now.Before(tok.expiry) {
		delete(k.m, uid)
		return keptToken{}, false
	}
	return tok, true
}

// has says whether a token that is valid at now is kept for uid.
func (k *keptTokens) has(uid types.UID, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	tok, ok := k.m[uid]
	return ok && now.Before(tok.expiry)
}

// drop forgets the token kept for uid.
func (k *keptTokens) drop(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, uid)
}
