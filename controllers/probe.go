package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
)

// The authorization probe (spec.probe). A token ServiceNow issues is not a
// token that works: REST API auth scopes answer 403 "Missing required api
// access scope" (and are read at run time, so an administrator's change
// applies to tokens already issued), and ACLs answer a table query 200 with
// no rows. So after each token snowauth obtains and has stored, it GETs each
// spec.probe path with that token and keeps the answers in status.probe;
// authorized turns them into the Authorized condition. The probe is not part
// of obtaining the token: it runs after the token Secret was written, and
// its outcome never touches Ready, RefreshFailed, the failure count or the
// schedule.

// maxProbeMessage bounds one path's message in status.probe.
const maxProbeMessage = 512

// probe GETs every spec.probe path with tok, just stored, all at once (each
// bounded by servicenow.ProbeTimeout), and records the answers in
// status.probe, with an Event when a path was refused or when all answer
// again.
func (r *ServiceNowConnectionReconciler) probe(ctx context.Context, s *scope, tok storedToken) {
	spec := s.conn.Spec.Probe
	if spec == nil || len(spec.Paths) == 0 {
		return
	}
	results := make([]snowv1.ProbePathStatus, len(spec.Paths))
	instance, err := r.Tokens.ResolveInstance(tok.instanceURL)
	var wg sync.WaitGroup
	for i, path := range spec.Paths {
		if err != nil {
			results[i] = probeResult(path, servicenow.ProbeResult{}, err)
			continue
		}
		wg.Go(func() {
			res, err := r.Tokens.Probe(ctx, instance, tok.accessToken, path)
			results[i] = probeResult(path, res, err)
			observeProbe(results[i].Result, err)
		})
	}
	wg.Wait()

	before, _, _ := probeOutcome(spec.Paths, s.conn.Status.Probe)
	s.conn.Status.Probe = &snowv1.ProbeStatus{Time: metav1.Time{Time: s.now.Truncate(time.Second)}, Paths: results}
	status, reason, message := probeOutcome(spec.Paths, s.conn.Status.Probe)
	switch {
	case status == metav1.ConditionFalse:
		logf.FromContext(ctx).Info("the authorization probe found a path the token may not use", "reason", reason, "message", message)
		r.event(s.conn, corev1.EventTypeWarning, reason, "Probe", "%s", message)
	case before == metav1.ConditionFalse:
		r.event(s.conn, corev1.EventTypeNormal, reason, "Probe", "%s", message)
	default:
		logf.FromContext(ctx).V(1).Info("the authorization probe succeeded", "paths", len(results))
	}
}

// probeResult is how one path answered, for status.probe.
func probeResult(path string, res servicenow.ProbeResult, err error) snowv1.ProbePathStatus {
	p := snowv1.ProbePathStatus{Path: path, Result: snowv1.ProbeAuthorized, StatusCode: int32(res.StatusCode)}
	if rl := res.RateLimit; !rl.IsZero() {
		p.RateLimit = &snowv1.RateLimitStatus{Limit: int32(rl.Limit), Rule: rl.Rule}
		if !rl.Reset.IsZero() {
			p.RateLimit.ResetAt = &metav1.Time{Time: rl.Reset}
		}
	}
	if err != nil {
		p.Result = snowv1.ProbeFailed
		var se *servicenow.Error
		if errors.As(err, &se) && se.Kind == servicenow.KindAuthenticationFailed {
			switch se.StatusCode {
			case http.StatusUnauthorized:
				p.Result = snowv1.ProbeUnauthorized
			case http.StatusForbidden:
				p.Result = snowv1.ProbeForbidden
			}
		}
		p.Message = bound(printable(err.Error()), maxProbeMessage)
		return p
	}
	if res.TableRows {
		rows := int32(min(res.Rows, 1<<30))
		p.Rows = &rows
	}
	return p
}

// probeOutcome is the Authorized condition, a pure function of spec.probe's
// paths and status.probe; status is "" when there are no paths (no
// condition). Messages hold absolute times only, so an unchanged outcome
// writes nothing.
func probeOutcome(paths []string, st *snowv1.ProbeStatus) (status metav1.ConditionStatus, reason, message string) {
	if len(paths) == 0 {
		return "", "", ""
	}
	if st == nil || !sameProbePaths(paths, st.Paths) {
		return metav1.ConditionUnknown, snowv1.ReasonProbePending,
			"no token was probed with the current spec.probe yet: snowauth probes after the next token it obtains"
	}
	at := st.Time.UTC().Format(time.RFC3339)
	var failed, notes []string
	unauthorized, forbidden := false, false
	for _, p := range st.Paths {
		switch p.Result {
		case snowv1.ProbeAuthorized:
			if p.Rows != nil && *p.Rows == 0 {
				notes = append(notes, fmt.Sprintf("GET %s returned no rows: ACLs may hide records from this user", p.Path))
			}
			continue
		case snowv1.ProbeUnauthorized:
			unauthorized = true
		case snowv1.ProbeForbidden:
			forbidden = true
		}
		failed = append(failed, fmt.Sprintf("GET %s: %s%s", p.Path, p.Message, probeHint(p)))
	}
	if len(failed) == 0 {
		message = fmt.Sprintf("every probe path answered the token with 2xx at %s", at)
		if len(notes) > 0 {
			message += "; " + strings.Join(notes, "; ")
		}
		return metav1.ConditionTrue, snowv1.ReasonProbeSucceeded, message
	}
	reason = snowv1.ReasonProbeFailed
	switch {
	case unauthorized:
		reason = snowv1.ReasonProbeUnauthorized
	case forbidden:
		reason = snowv1.ReasonProbeForbidden
	}
	message = fmt.Sprintf("%d of %d probe paths refused the token or failed at %s (the token is valid and stored): %s",
		len(failed), len(st.Paths), at, strings.Join(failed, "; "))
	return metav1.ConditionFalse, reason, message
}

// probeHint says what a refusal usually means on ServiceNow.
func probeHint(p snowv1.ProbePathStatus) string {
	switch {
	case p.Result == snowv1.ProbeForbidden && strings.Contains(strings.ToLower(p.Message), "missing required api access scope"):
		return ": the OAuth client's REST API auth scopes do not cover this API; add its scope (or useraccount) " +
			"to the OAuth client, which applies to tokens already issued"
	case p.Result == snowv1.ProbeForbidden:
		return ": the instance refuses this user or token this API; check the user's roles and the API's access"
	case p.Result == snowv1.ProbeUnauthorized:
		return ": the instance did not accept the token here; check that the user is active and the API takes OAuth tokens"
	}
	return ""
}

// sameProbePaths says results answer exactly paths, in their order.
func sameProbePaths(paths []string, results []snowv1.ProbePathStatus) bool {
	if len(paths) != len(results) {
		return false
	}
	for i, p := range paths {
		if results[i].Path != p {
			return false
		}
	}
	return true
}
