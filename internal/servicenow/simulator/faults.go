package simulator

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// FaultKind names a misbehaviour the simulator can switch on.
type FaultKind string

// The faults, each modelled on what a real instance (or what stands between
// it and the operator) does.
const (
	// FaultHibernating answers every path with 200 text/html "Your instance
	// is hibernating", as a sleeping developer instance does.
	FaultHibernating FaultKind = "Hibernating"
	// FaultServerError answers Fault.Status (default 503) with an HTML
	// error page, and Retry-After when Fault.RetryAfter is set.
	FaultServerError FaultKind = "ServerError"
	// FaultRateLimited answers 429 with Retry-After (Fault.RetryAfter,
	// default 60 s), X-RateLimit-Limit/-Reset/-Rule and the REST API's
	// "Rate limit exceeded" envelope.
	FaultRateLimited FaultKind = "RateLimited"
	// FaultLatency waits Fault.Latency, then answers normally.
	FaultLatency FaultKind = "Latency"
	// FaultHang never answers: the request ends when the client gives up or
	// the simulator closes.
	FaultHang FaultKind = "Hang"
	// FaultMalformedJSON answers 200 application/json with a truncated body.
	FaultMalformedJSON FaultKind = "MalformedJSON"
	// FaultDropConnection closes the connection without answering.
	FaultDropConnection FaultKind = "DropConnection"
	// FaultRedirect answers Fault.Status (default 307, which would resend
	// the POST body, credentials included) with Location: Fault.Location
	// (default another host).
	FaultRedirect FaultKind = "Redirect"
	// FaultResponse answers Fault.Status (default 200) with
	// Fault.ContentType and Fault.Body verbatim: anything else a test needs,
	// such as a token response without expires_in.
	FaultResponse FaultKind = "Response"
)

// Fault is a misbehaviour a test switches on with SetFault and off with
// ClearFault. Only the fields its Kind mentions matter.
type Fault struct {
	Kind FaultKind
	// Path restricts the fault to one path, such as "/oauth_token.do";
	// empty means every path.
	Path string
	// Times limits the fault to the next Times matching requests, after
	// which it clears itself; 0 means until ClearFault.
	Times int

	Status         int
	RetryAfter     time.Duration
	RetryAfterDate bool // send Retry-After as an HTTP date instead of seconds
	Latency        time.Duration
	Location       string
	ContentType    string
	Body           string
}

// SetFault switches f on, replacing the current fault.
func (s *Simulator) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = &f
}

// ClearFault switches the current fault off.
func (s *Simulator) ClearFault() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = nil
}

// takeFault returns the fault that applies to r, counting it against Times.
func (s *Simulator) takeFault(r *http.Request) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fault
	if f == nil || (f.Path != "" && f.Path != r.URL.Path) {
		return Fault{}, false
	}
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			s.fault = nil
		}
	}
	return *f, true
}

const hibernationPage = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Instance Hibernating page</title></head>
<body><h1>Your instance is hibernating</h1>
<p>Developer instances hibernate when they are not used. Sign in to the developer portal to wake it up.</p>
<a href="https://developer.servicenow.com/dev.do#!/home?wu=true">Sign in</a>
</body></html>
`

// serveFault answers r with the current fault, if any, reporting its kind
// to taken before answering. handled is false when there is none, or when
// the fault only delays the normal answer.
func (s *Simulator) serveFault(w *statusWriter, r *http.Request, taken func(FaultKind)) (kind FaultKind, handled bool) {
	f, ok := s.takeFault(r)
	if !ok {
		return "", false
	}
	taken(f.Kind)
	switch f.Kind {
	case FaultHibernating:
		w.Header().Set("Content-Type", "text/html;charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(hibernationPage))
	case FaultServerError:
		status := orDefaultInt(f.Status, http.StatusServiceUnavailable)
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter.Seconds())))
		}
		w.Header().Set("Content-Type", "text/html;charset=UTF-8")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>\n", status, http.StatusText(status))
	case FaultRateLimited:
		wait := f.RetryAfter
		if wait <= 0 {
			wait = time.Minute
		}
		now := s.Now()
		if f.RetryAfterDate {
			w.Header().Set("Retry-After", now.Add(wait).UTC().Format(http.TimeFormat))
		} else {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())))
		}
		w.Header().Set("X-RateLimit-Limit", "100")
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(now.Add(wait).Unix(), 10))
		w.Header().Set("X-RateLimit-Rule", "5f2e4a1bdb3313003a7a52e5ae9619c4")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"error": map[string]any{"message": "Rate limit exceeded",
				"detail": "Rate limit of 100 requests per hour for Table API exceeded"},
			"status": "failure",
		})
	case FaultLatency:
		if !s.wait(r, f.Latency) {
			// The client gave up or we are closing: make sure net/http
			// does not answer for us when the handler returns.
			_ = w.hijack()
			return f.Kind, true
		}
		return f.Kind, false
	case FaultHang:
		s.wait(r, -1)
		_ = w.hijack() // never an answer, not even net/http's empty 200
	case FaultMalformedJSON:
		w.Header().Set("Content-Type", jsonContentType)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"access_token":"ZmFrZS10cnVuY2F0ZWQ`))
	case FaultDropConnection:
		if err := w.hijack(); err != nil {
			http.Error(w, "cannot drop the connection: "+err.Error(), http.StatusInternalServerError)
		}
	case FaultRedirect:
		location := f.Location
		if location == "" {
			location = "https://sso.example.net" + r.URL.Path
		}
		w.Header().Set("Location", location)
		w.WriteHeader(orDefaultInt(f.Status, http.StatusTemporaryRedirect))
	case FaultResponse:
		if f.ContentType != "" {
			w.Header().Set("Content-Type", f.ContentType)
		}
		w.WriteHeader(orDefaultInt(f.Status, http.StatusOK))
		_, _ = w.Write([]byte(f.Body))
	default:
		http.Error(w, "unknown simulator fault "+string(f.Kind), http.StatusInternalServerError)
	}
	return f.Kind, true
}

// wait blocks for d (forever if d < 0) and reports whether it ran its course:
// false when the client went away or the simulator is closing, so a slow or
// hung request never holds up Close.
func (s *Simulator) wait(r *http.Request, d time.Duration) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	}
	return false
}

func orDefaultInt(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}
