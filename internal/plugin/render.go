package plugin

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// none marks a value that does not exist (yet), as kubectl describe does.
const none = "<none>"

// maxEvents is how many of a connection's events status shows: enough to
// see a failure pattern, few enough to keep the conditions on screen.
const maxEvents = 10

// RenderOptions change what RenderStatus and RenderList show.
type RenderOptions struct {
	// Wide is -o wide: every Event and who reported it in RenderStatus,
	// more columns in RenderList.
	Wide bool
}

// StatusView is what `kubectl servicenow status` shows.
type StatusView struct {
	// Connection is the connection as the API server returned it.
	Connection *snowv1.ServiceNowConnection
	// Events are the events.k8s.io/v1 Events regarding the connection, in
	// any order.
	Events []eventsv1.Event
	// EventsUnavailable says why Events could not be read (RBAC may allow
	// reading connections but not Events); empty when they were read.
	EventsUnavailable string
}

// RelativeTime says when t is, seen from now, the way kubectl's AGE column
// does: "in 24m", "3m ago", "now". It rounds to the second because status
// times have 1-second resolution and sub-second noise would turn "in 24m"
// into "in 23m59s".
func RelativeTime(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	switch {
	case d == 0:
		return "now"
	case d > 0:
		return "in " + duration.HumanDuration(d)
	default:
		return duration.HumanDuration(-d) + " ago"
	}
}

// RenderStatus writes a connection's state as a person reads it at a
// glance: a summary block (for the JWTBearer grant with its signing key,
// and managed keys' published keys), its conditions and its recent
// events. Relative times are computed from now; absolute ones are UTC
// RFC 3339, the form the operator's condition messages use. Every value
// is shown through Printable.
func RenderStatus(w io.Writer, v StatusView, now time.Time, opts RenderOptions) error {
	c := v.Connection
	st := c.Status
	summary := [][]string{
		{"Connection:", c.Namespace + "/" + c.Name},
		{"State:", stateSummary(c)},
		{"Instance:", orNone(st.InstanceURL)},
		{"Grant:", string(c.Spec.GrantType)},
		{"Token Secret:", tokenSecret(c)},
		{"Expires:", expiry(st.ExpiresAt, now)},
		{"Last refresh:", when(st.LastRefreshTime, now)},
		{"Next refresh:", nextRefresh(c, now)},
		{"Failures:", failures(st, now)},
	}
	if c.Spec.GrantType == snowv1.GrantAuthorizationCode {
		summary = append(summary, []string{"Refresh token:", "stops working " + when(st.RefreshTokenExpiresAt, now)})
		if a := st.Authorization; a != nil {
			if a.AuthorizedAt != nil {
				by := ""
				if a.AuthorizedBy != "" {
					by = " by ServiceNow user " + a.AuthorizedBy
				}
				summary = append(summary, []string{"Authorised:", when(a.AuthorizedAt, now) + by})
			}
			if a.LinkID != "" {
				summary = append(summary, []string{"Link:", "in Secret " + a.LinkSecretName + ", waiting for a person; expires " +
					when(a.LinkExpiresAt, now)})
			}
			if a.FailureMessage != "" {
				summary = append(summary, []string{"Last authorization:", "failed: " + a.FailureMessage})
			}
		}
	}
	if c.Spec.GrantType == snowv1.GrantJWTBearer {
		summary = append(summary, jwtBearerRows(c, now)...)
	}
	for _, h := range st.Horizons {
		// A credential the token is made from, and when it ends.
		summary = append(summary, []string{"Horizon:", string(h.Kind) + " ends " + when(&h.At, now) + " (" + oneLine(h.Source) + ")"})
	}
	if req := c.Annotations[snowv1.AnnotationRefreshRequestedAt]; req != "" {
		state := "handled"
		if req != st.LastHandledRefreshRequest {
			state = "pending: snowauth has not acted on it yet"
		}
		summary = append(summary, []string{"Refresh request:", fmt.Sprintf("%s (%s)", req, state)})
	}
	if err := writeTable(w, "", summary); err != nil {
		return err
	}
	if c.Spec.GrantType == snowv1.GrantJWTBearer && signingKeyMode(c) == snowv1.SigningKeyManaged {
		if err := renderPublishedKeys(w, st.JWTBearer, now); err != nil {
			return err
		}
	}

	if _, err := io.WriteString(w, "Conditions:\n"); err != nil {
		return err
	}
	if len(st.Conditions) == 0 {
		if _, err := io.WriteString(w, "  "+none+"\n"); err != nil {
			return err
		}
	} else {
		rows := [][]string{{"TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"}}
		for _, cond := range st.Conditions {
			rows = append(rows, []string{cond.Type, string(cond.Status), cond.Reason,
				RelativeTime(cond.LastTransitionTime.Time, now), cond.Message})
		}
		if err := writeTable(w, "  ", rows); err != nil {
			return err
		}
	}

	if _, err := io.WriteString(w, "Events (newest last):\n"); err != nil {
		return err
	}
	return renderEvents(w, v, now, opts)
}

// jwtBearerRows are the JWTBearer grant's lines of the summary: for
// managed keys, where they are published, which one signs and when the
// next is made; for a provided key, its id and its certificate.
func jwtBearerRows(c *snowv1.ServiceNowConnection, now time.Time) [][]string {
	st := c.Status.JWTBearer
	if st == nil {
		st = &snowv1.JWTBearerStatus{}
	}
	if signingKeyMode(c) != snowv1.SigningKeyProvided {
		return [][]string{
			{"Signing key:", "Managed: snowauth makes, publishes and rotates it"},
			{"JWKS URL:", orNone(st.JWKSURL)},
			{"Active key:", orNone(st.ActiveKeyID)},
			{"Next rotation:", when(st.NextRotationTime, now)},
		}
	}
	cert := none + ": snowauth makes it at the first token request"
	if st.Certificate != "" {
		verb := "expires "
		if st.CertificateNotAfter != nil && !st.CertificateNotAfter.After(now) {
			verb = "expired "
		}
		cert = verb + when(st.CertificateNotAfter, now) + "; kubectl servicenow jwt-certificate " + c.Name +
			" prints it for the instance's JWT verifier map"
	}
	return [][]string{
		{"Signing key:", "Provided: private_key of Secret " + c.Spec.CredentialsSecretRef.Name},
		{"Active key:", orNone(st.ActiveKeyID)},
		{"Certificate:", cert},
	}
}

// renderPublishedKeys writes the managed keys the JWKS document holds,
// oldest first, as status lists them: when each signs from, and when an
// older one leaves the document.
func renderPublishedKeys(w io.Writer, st *snowv1.JWTBearerStatus, now time.Time) error {
	if _, err := io.WriteString(w, "Published keys:\n"); err != nil {
		return err
	}
	if st == nil || len(st.Keys) == 0 {
		_, err := io.WriteString(w, "  "+none+"\n")
		return err
	}
	rows := [][]string{{"KEY ID", "ALGORITHM", "SIGNS FROM", "RETIRES AT"}}
	for _, k := range st.Keys {
		rows = append(rows, []string{k.KeyID, string(k.Algorithm), when(k.SignsFrom, now), when(k.RetiresAt, now)})
	}
	return writeTable(w, "  ", rows)
}

func renderEvents(w io.Writer, v StatusView, now time.Time, opts RenderOptions) error {
	if v.EventsUnavailable != "" {
		_, err := io.WriteString(w, "  <cannot list Events: "+oneLine(v.EventsUnavailable)+">\n")
		return err
	}
	if len(v.Events) == 0 {
		_, err := io.WriteString(w, "  "+none+"\n")
		return err
	}
	events := slices.Clone(v.Events)
	slices.SortStableFunc(events, func(a, b eventsv1.Event) int {
		la, _, _ := eventTimes(&a)
		lb, _, _ := eventTimes(&b)
		return la.Compare(lb)
	})
	if len(events) > maxEvents && !opts.Wide {
		events = events[len(events)-maxEvents:]
	}
	header := []string{"LAST SEEN", "TYPE", "REASON", "MESSAGE"}
	if opts.Wide {
		header = []string{"LAST SEEN", "TYPE", "REASON", "FROM", "MESSAGE"}
	}
	rows := [][]string{header}
	for i := range events {
		e := &events[i]
		last, first, count := eventTimes(e)
		seen := RelativeTime(last, now)
		if count > 1 {
			seen += fmt.Sprintf(" (x%d over %s)", count, duration.HumanDuration(last.Sub(first)))
		}
		if opts.Wide {
			rows = append(rows, []string{seen, e.Type, e.Reason, reportedBy(e), e.Note})
		} else {
			rows = append(rows, []string{seen, e.Type, e.Reason, e.Note})
		}
	}
	return writeTable(w, "  ", rows)
}

// RenderList writes one line per connection: where it is, its state (the
// Ready reason), when its token expires and why refreshing fails, if it
// does; with opts.Wide also its grant, instance, token Secret, next
// refresh and the message that goes with its state. Connections are sorted
// by namespace and name; every value is shown through Printable.
func RenderList(w io.Writer, conns []snowv1.ServiceNowConnection, now time.Time, opts RenderOptions) error {
	sorted := slices.Clone(conns)
	sortConnections(sorted)
	header := []string{"NAMESPACE", "NAME", "STATE", "EXPIRES", "FAILING"}
	if opts.Wide {
		header = append(header, "GRANT", "INSTANCE", "SECRET", "NEXT REFRESH", "MESSAGE")
	}
	rows := [][]string{header}
	for i := range sorted {
		c := &sorted[i]
		state := "Unknown"
		if r := meta.FindStatusCondition(c.Status.Conditions, snowv1.ConditionReady); r != nil {
			state = r.Reason
		}
		expires := none
		if c.Status.ExpiresAt != nil {
			expires = RelativeTime(c.Status.ExpiresAt.Time, now)
		}
		failing := none
		if f := refreshFailed(c); f != nil {
			failing = f.Reason
		}
		row := []string{c.Namespace, c.Name, state, expires, failing}
		if opts.Wide {
			next := none
			if c.Status.NextRefreshTime != nil && !c.Spec.Suspend {
				next = RelativeTime(c.Status.NextRefreshTime.Time, now)
			}
			row = append(row, string(c.Spec.GrantType), orNone(c.Status.InstanceURL), orNone(c.Status.TokenSecretName),
				next, orNone(stateMessage(c)))
		}
		rows = append(rows, row)
	}
	return writeTable(w, "", rows)
}

// stateMessage is the message of the condition that says most about c:
// RefreshFailed while a refresh fails, else Ready.
func stateMessage(c *snowv1.ServiceNowConnection) string {
	if f := refreshFailed(c); f != nil {
		return f.Message
	}
	if r := meta.FindStatusCondition(c.Status.Conditions, snowv1.ConditionReady); r != nil {
		return r.Message
	}
	return ""
}

// reportedBy is the controller and instance that reported e, as kubectl
// describe's FROM column shows them.
func reportedBy(e *eventsv1.Event) string {
	from := e.ReportingController
	if from == "" {
		from = e.DeprecatedSource.Component
	}
	if e.ReportingInstance != "" {
		from += "/" + e.ReportingInstance
	}
	return orNone(from)
}

// stateSummary is the one line that answers "is this connection OK?": the
// Ready condition, and a failing refresh even while the old token is valid
// (the moment to act before applications notice).
func stateSummary(c *snowv1.ServiceNowConnection) string {
	ready := meta.FindStatusCondition(c.Status.Conditions, snowv1.ConditionReady)
	var s string
	switch {
	case ready == nil:
		return "Unknown (snowauth has not reported on this connection yet)"
	case ready.Reason == snowv1.ReasonSuspended:
		return "Suspended (spec.suspend is true)"
	case ready.Status == metav1.ConditionTrue:
		s = "Ready (" + ready.Reason + ")"
	default:
		s = "Not ready (" + ready.Reason + ")"
	}
	if f := refreshFailed(c); f != nil {
		s += ", refresh failing (" + f.Reason + ")"
	}
	return s
}

// refreshFailed is the RefreshFailed condition while it is true, else nil.
func refreshFailed(c *snowv1.ServiceNowConnection) *metav1.Condition {
	f := meta.FindStatusCondition(c.Status.Conditions, snowv1.ConditionRefreshFailed)
	if f == nil || f.Status != metav1.ConditionTrue {
		return nil
	}
	return f
}

// tokenSecret names the token Secret, saying so when snowauth has not
// written it yet (status only names it once it exists).
func tokenSecret(c *snowv1.ServiceNowConnection) string {
	if c.Status.TokenSecretName != "" {
		return c.Status.TokenSecretName
	}
	return c.TokenSecretName() + " (not written yet)"
}

func expiry(t *metav1.Time, now time.Time) string {
	if t == nil {
		return none
	}
	if !t.After(now) {
		return "expired " + when(t, now)
	}
	return when(t, now)
}

func nextRefresh(c *snowv1.ServiceNowConnection, now time.Time) string {
	if c.Spec.Suspend {
		return none + " (suspended)"
	}
	s := when(c.Status.NextRefreshTime, now)
	if c.Status.NextRefreshTime != nil && c.Status.ConsecutiveFailures > 0 {
		s += ", a retry"
	}
	return s
}

func failures(st snowv1.ServiceNowConnectionStatus, now time.Time) string {
	if st.ConsecutiveFailures == 0 {
		return "none since the last success"
	}
	s := fmt.Sprintf("%d in a row", st.ConsecutiveFailures)
	if st.LastFailureTime != nil {
		s += ", the last " + when(st.LastFailureTime, now)
	}
	return s
}

// when is "in 24m (2030-01-01T10:30:00Z)": relative for the glance,
// absolute to compare with logs and condition messages.
func when(t *metav1.Time, now time.Time) string {
	if t == nil {
		return none
	}
	return fmt.Sprintf("%s (%s)", RelativeTime(t.Time, now), t.UTC().Format(time.RFC3339))
}

// eventTimes is when an event was last and first seen and how often: an
// events.k8s.io/v1 Event repeated by its recorder carries a series; one
// written through core/v1 carries the deprecated timestamps and count.
func eventTimes(e *eventsv1.Event) (last, first time.Time, count int32) {
	first = e.EventTime.Time
	if first.IsZero() {
		first = e.DeprecatedFirstTimestamp.Time
	}
	if first.IsZero() {
		first = e.CreationTimestamp.Time
	}
	last, count = first, 1
	switch {
	case e.Series != nil:
		last, count = e.Series.LastObservedTime.Time, e.Series.Count
	case !e.DeprecatedLastTimestamp.IsZero():
		last = e.DeprecatedLastTimestamp.Time
		count = max(e.DeprecatedCount, 1)
	}
	return last, first, count
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

// oneLine keeps a value in its table cell, printable: a tab or newline
// would break the columns, a control sequence the terminal.
func oneLine(s string) string {
	return strings.Join(strings.Fields(Printable(s)), " ")
}

// writeTable writes rows as aligned columns, each line prefixed by indent.
func writeTable(w io.Writer, indent string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = oneLine(c)
		}
		if _, err := io.WriteString(tw, indent+strings.Join(cells, "\t")+"\n"); err != nil {
			return err
		}
	}
	return tw.Flush()
}
