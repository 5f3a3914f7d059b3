package simulator

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// TableAccess is how the Table API answers a valid token's GET of one
// table, as the instance's REST API auth scopes, roles and ACLs decide.
type TableAccess struct {
	// Status, when neither 0 nor 200, is answered with the REST API's error
	// envelope {"error":{"message":Message,"detail":Detail},"status":"failure"}
	// (a detail of "" is sent as null): 403 with "Missing required api
	// access scope" is what a token whose OAuth client's REST API auth
	// scopes do not cover the Table API gets.
	Status          int
	Message, Detail string
	// Rows is how many records of the table the user may read. The answer
	// holds up to sysparm_limit of them (a sys_id each) and X-Total-Count
	// says how many there are; 0 answers 200 {"result":[]}, which is how
	// ACLs that hide every record from the user look.
	Rows int
}

// RateLimitRule is an inbound REST API rate limit rule
// (sys_rate_limit_rules) for all users on the Table API.
type RateLimitRule struct {
	// Limit is how many Table API requests each user may make per hour of
	// the simulator clock; 0 removes the rule.
	Limit int
	// SysID is the rule's sys_id, sent as X-RateLimit-Rule; default a
	// random one.
	SysID string
}

// rateWindow counts one user's requests in the current hour.
type rateWindow struct {
	start time.Time
	count int
}

// SetTableAccess sets how GET /api/now/table/<table> answers valid tokens
// from now on, replacing the default: sys_user lists the registered users,
// every other table answers 400 "Invalid table".
func (s *Simulator) SetTableAccess(table string, a TableAccess) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tables[table] = a
}

// SetRateLimit sets (or, with Limit 0, removes) the rate limit rule. While
// there is one, every Table API answer to a valid token carries
// X-RateLimit-Limit, X-RateLimit-Reset (the end of the current hour) and
// X-RateLimit-Rule, and a user's requests beyond Limit in an hour get 429
// with Retry-After and the "Rate limit exceeded" envelope. ServiceNow sends
// no header with the requests left, and neither does the simulator.
func (s *Simulator) SetRateLimit(rule RateLimitRule) {
	if rule.Limit > 0 && rule.SysID == "" {
		rule.SysID = randomHex(16)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit, s.rateCounts = rule, map[string]*rateWindow{}
}

// TableRequests counts the GETs of table that reached the Table API, with
// any outcome (a fault that answered first is not counted).
func (s *Simulator) TableRequests(table string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tableRequests[table]
}

// serveTable is GET /api/now/table/{table} (and /api/now/{version}/table/{table}):
// the valid bearer token's user, counted against the rate limit rule, then
// the table's TableAccess, or by default for sys_user the registered users,
// sys_id (and user_name, active unless sysparm_fields restricts them), up to
// sysparm_limit.
func (s *Simulator) serveTable(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	table := r.PathValue("table")
	s.tableRequests[table]++
	u := s.bearerUser(w, r)
	if u == nil || !s.countRate(w, u) {
		return
	}
	limit := -1
	if n, err := strconv.Atoi(r.URL.Query().Get("sysparm_limit")); err == nil && n >= 0 {
		limit = n
	}
	if a, ok := s.tables[table]; ok {
		if a.Status != 0 && a.Status != http.StatusOK {
			writeEnvelope(w, a.Status, a.Message, a.Detail)
			return
		}
		n := a.Rows
		if limit >= 0 && limit < n {
			n = limit
		}
		rows := make([]map[string]string, 0, n)
		for i := range n {
			rows = append(rows, map[string]string{"sys_id": fmt.Sprintf("%032x", i+1)})
		}
		w.Header().Set("X-Total-Count", strconv.Itoa(a.Rows))
		writeJSON(w, http.StatusOK, map[string]any{"result": rows})
		return
	}
	if table != "sys_user" {
		writeEnvelope(w, http.StatusBadRequest, "Invalid table "+table, "")
		return
	}

	names := make([]string, 0, len(s.users))
	for name := range s.users {
		names = append(names, name)
	}
	slices.Sort(names)
	n := len(names)
	if limit >= 0 && limit < n {
		n = limit
	}
	onlySysID := r.URL.Query().Get("sysparm_fields") == "sys_id"
	rows := make([]map[string]string, 0, n)
	for _, name := range names[:n] {
		u := s.users[name]
		row := map[string]string{"sys_id": u.sysID}
		if !onlySysID {
			row["user_name"] = u.Username
			row["active"] = strconv.FormatBool(!u.Inactive)
		}
		rows = append(rows, row)
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(len(names)))
	writeJSON(w, http.StatusOK, map[string]any{"result": rows})
}

// countRate counts a request of u against the rate limit rule, if there
// is one, and sets its headers. Beyond the limit it answers 429 and
// returns false. s.mu must be held.
func (s *Simulator) countRate(w http.ResponseWriter, u *user) bool {
	rule := s.rateLimit
	if rule.Limit <= 0 {
		return true
	}
	now := s.now()
	start := now.Truncate(time.Hour)
	win := s.rateCounts[u.Username]
	if win == nil || !win.start.Equal(start) {
		win = &rateWindow{start: start}
		s.rateCounts[u.Username] = win
	}
	win.count++
	reset := start.Add(time.Hour)
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(rule.Limit))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	w.Header().Set("X-RateLimit-Rule", rule.SysID)
	if win.count <= rule.Limit {
		return true
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(reset.Sub(now).Round(time.Second)/time.Second)))
	writeEnvelope(w, http.StatusTooManyRequests, "Rate limit exceeded",
		fmt.Sprintf("Rate limit of %d requests per hour for Table API exceeded", rule.Limit))
	return false
}

// writeEnvelope answers the REST API's error envelope; an empty detail is
// null, as ServiceNow sends it.
func writeEnvelope(w http.ResponseWriter, status int, message, detail string) {
	var d any
	if detail != "" {
		d = detail
	}
	writeJSON(w, status, map[string]any{
		"error":  map[string]any{"message": message, "detail": d},
		"status": "failure",
	})
}
