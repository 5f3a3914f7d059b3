package controllers

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
	"github.com/snowauth/snowauth/internal/servicenow"
	"github.com/snowauth/snowauth/internal/version"
)

// Metrics. Labels never hold a token, a secret or anything from a response
// body: namespace and name of a connection, a grant, a result and a reason
// (a fixed CamelCase word).
var (
	tokenRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "snowauth_token_requests_total",
		Help: "Token requests made to ServiceNow, by grant, result (success, failure) and failure reason.",
	}, []string{"grant", "result", "reason"})

	tokenRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "snowauth_token_request_duration_seconds",
		Help:    "Time taken by token requests to ServiceNow, by result.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"result"})

	// No path label: paths are user input, and a label of them would let
	// any connection add series to the manager for good.
	probeRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "snowauth_probe_requests_total",
		Help: "Authorization probe requests (GET of a spec.probe path with a new token), by result (authorized, unauthorized, forbidden, failed) and, when failed, the failure kind.",
	}, []string{"result", "reason"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(tokenRequests, tokenRequestDuration, probeRequests)
}

// observeProbe counts one probe request that ended in result, with err.
func observeProbe(result snowv1.ProbeResult, err error) {
	reason := ""
	if result == snowv1.ProbeFailed {
		reason = string(servicenow.KindOf(err))
	}
	probeRequests.WithLabelValues(strings.ToLower(string(result)), reason).Inc()
}

// observeTokenRequest records one token request's outcome.
func observeTokenRequest(grant string, took time.Duration, f *failure) {
	result, reason := "success", ""
	if f != nil {
		result, reason = "failure", f.reason
	}
	tokenRequests.WithLabelValues(grant, result, reason).Inc()
	tokenRequestDuration.WithLabelValues(result).Observe(took.Seconds())
}

var (
	connLabels = []string{"namespace", "name"}

	descExpiry = prometheus.NewDesc("snowauth_connection_token_expiry_timestamp_seconds",
		"When the access token in the connection's token Secret expires (Unix time).", connLabels, nil)
	descLastRefresh = prometheus.NewDesc("snowauth_connection_last_refresh_timestamp_seconds",
		"When snowauth last obtained a token for the connection (Unix time).", connLabels, nil)
	descNextRefresh = prometheus.NewDesc("snowauth_connection_next_refresh_timestamp_seconds",
		"When snowauth will next request a token for the connection: the planned refresh or the next retry (Unix time).", connLabels, nil)
	descFailures = prometheus.NewDesc("snowauth_connection_consecutive_failures",
		"Token requests that failed in a row since the connection's last success.", connLabels, nil)
	descReady = prometheus.NewDesc("snowauth_connection_ready",
		"1 for the connection's Ready condition status (True, False, Unknown) and reason, 0 for the other statuses.",
		append(connLabels, "status", "reason"), nil)
	descRefreshFailed = prometheus.NewDesc("snowauth_connection_refresh_failed",
		"1 while the connection's latest token request failed, with the failure reason; 0 otherwise.",
		append(connLabels, "reason"), nil)
	descRefreshTokenExpiry = prometheus.NewDesc("snowauth_connection_refresh_token_expiry_timestamp_seconds",
		"When the stored refresh token of an AuthorizationCode connection stops working (Unix time).", connLabels, nil)
	descReauthorize = prometheus.NewDesc("snowauth_connection_reauthorization_required",
		"1 while an AuthorizationCode connection needs a person to authorise (again): no usable refresh token, or one that expires soon.",
		connLabels, nil)
	descCredentialExpiry = prometheus.NewDesc("snowauth_credential_expiry_timestamp_seconds",
		"When a credential the connection's access token depends on reaches its horizon (status.horizons): a refresh token's end, a certificate's notAfter, a client secret's maximum age (Unix time).",
		append(connLabels, "kind"), nil)
	descProbeAuthorized = prometheus.NewDesc("snowauth_connection_probe_authorized",
		"1 while every spec.probe path answered the connection's latest token with 2xx (Authorized True), 0 while one did not (Authorized False); absent without spec.probe and until a token was probed.",
		connLabels, nil)
	descRateLimit = prometheus.NewDesc("snowauth_connection_ratelimit_limit",
		"Requests per hour that the instance's rate limit rule (X-RateLimit-Rule, label rule) allows the connection's user (X-RateLimit-Limit), as the latest probe saw it; absent when no rule matched. ServiceNow reports no count of the requests left.",
		append(connLabels, "rule"), nil)
	descRateLimitReset = prometheus.NewDesc("snowauth_connection_ratelimit_reset_timestamp_seconds",
		"When the rate limit rule's hourly count starts again (X-RateLimit-Reset, Unix time), as the latest probe saw it.",
		append(connLabels, "rule"), nil)
	descInfo = prometheus.NewDesc("snowauth_connection_info",
		"Always 1; labels say which grant and token Secret the connection uses.",
		append(connLabels, "grant", "token_secret"), nil)
	descLeader = prometheus.NewDesc("snowauth_leader",
		"1 on the replica that refreshes tokens and exports the per-connection series, 0 on a standby.", nil, nil)
	descBuildInfo = prometheus.NewDesc("snowauth_build_info",
		"Always 1; labels say which build of snowauth is running.", []string{"version", "revision", "goversion"}, nil)
)

// ConnectionCollector computes per-connection metrics from the cache at
// scrape time, as cert-manager's certificate collector does: a deleted
// connection leaves no stale series, and the reconciler needs no metric
// bookkeeping. Only the leader exports them: a standby's cache holds the
// same connections, and two replicas exporting them would double every sum.
type ConnectionCollector struct {
	Reader client.Reader
	// Elected is closed once this replica leads (the manager's Elected);
	// nil means it always does.
	Elected <-chan struct{}
	// Build labels snowauth_build_info.
	Build version.Info
}

// leads says whether this replica is the leader now.
func (c *ConnectionCollector) leads() bool {
	if c.Elected == nil {
		return true
	}
	select {
	case <-c.Elected:
		return true
	default:
		return false
	}
}

// Describe implements prometheus.Collector.
func (c *ConnectionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descExpiry, descLastRefresh, descNextRefresh, descFailures, descReady, descRefreshFailed,
		descRefreshTokenExpiry, descReauthorize, descCredentialExpiry, descProbeAuthorized, descRateLimit, descRateLimitReset,
		descInfo, descLeader, descBuildInfo} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ConnectionCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, c.Build.Version, c.Build.Revision, c.Build.GoVersion)
	if !c.leads() {
		ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var conns snowv1.ServiceNowConnectionList
	if err := c.Reader.List(ctx, &conns); err != nil {
		ch <- prometheus.NewInvalidMetric(descReady, err)
		return
	}
	for i := range conns.Items {
		conn := &conns.Items[i]
		ns, name := conn.Namespace, conn.Name
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{ns, name}, extra...)...)
		}
		st := conn.Status
		if st.ExpiresAt != nil {
			gauge(descExpiry, float64(st.ExpiresAt.Unix()))
		}
		if st.LastRefreshTime != nil {
			gauge(descLastRefresh, float64(st.LastRefreshTime.Unix()))
		}
		if st.NextRefreshTime != nil && !conn.Spec.Suspend {
			gauge(descNextRefresh, float64(st.NextRefreshTime.Unix()))
		}
		gauge(descFailures, float64(st.ConsecutiveFailures))
		if conn.Spec.GrantType == snowv1.GrantAuthorizationCode {
			if st.RefreshTokenExpiresAt != nil {
				gauge(descRefreshTokenExpiry, float64(st.RefreshTokenExpiresAt.Unix()))
			}
			gauge(descReauthorize, boolValue(needsAuthorization(st.Conditions)))
		}
		for _, h := range st.Horizons {
			gauge(descCredentialExpiry, float64(h.At.Unix()), string(h.Kind))
		}
		gauge(descInfo, 1, string(conn.Spec.GrantType), conn.TokenSecretName())

		readyStatus, readyReason := "Unknown", ""
		if r := meta.FindStatusCondition(st.Conditions, snowv1.ConditionReady); r != nil {
			readyStatus, readyReason = string(r.Status), r.Reason
		}
		for _, s := range []string{"True", "False", "Unknown"} {
			v, reason := 0.0, ""
			if s == readyStatus {
				v, reason = 1, readyReason
			}
			gauge(descReady, v, s, reason)
		}
		if f := meta.FindStatusCondition(st.Conditions, snowv1.ConditionRefreshFailed); f != nil {
			gauge(descRefreshFailed, 1, f.Reason)
		} else {
			gauge(descRefreshFailed, 0, "")
		}
		if a := meta.FindStatusCondition(st.Conditions, snowv1.ConditionAuthorized); a != nil && a.Status != metav1.ConditionUnknown {
			gauge(descProbeAuthorized, boolValue(a.Status == metav1.ConditionTrue))
		}
		for _, rl := range rateLimits(st.Probe) {
			if rl.Limit > 0 {
				gauge(descRateLimit, float64(rl.Limit), rl.Rule)
			}
			if rl.ResetAt != nil {
				gauge(descRateLimitReset, float64(rl.ResetAt.Unix()), rl.Rule)
			}
		}
	}
}

// rateLimits are the rate limit rules the latest probe's answers named,
// each once (the first path's answer for a rule counts).
func rateLimits(p *snowv1.ProbeStatus) []snowv1.RateLimitStatus {
	if p == nil {
		return nil
	}
	var out []snowv1.RateLimitStatus
	seen := map[string]bool{}
	for _, path := range p.Paths {
		if rl := path.RateLimit; rl != nil && !seen[rl.Rule] {
			seen[rl.Rule] = true
			out = append(out, *rl)
		}
	}
	return out
}

// needsAuthorization says a person must authorise an AuthorizationCode
// connection (again): it has no usable refresh token, or one that expires
// soon.
func needsAuthorization(conditions []metav1.Condition) bool {
	if meta.IsStatusConditionTrue(conditions, snowv1.ConditionRefreshTokenExpiring) {
		return true
	}
	for _, t := range []string{snowv1.ConditionReady, snowv1.ConditionRefreshFailed} {
		if c := meta.FindStatusCondition(conditions, t); c != nil &&
			(c.Reason == snowv1.ReasonAuthorizationRequired || c.Reason == snowv1.ReasonRefreshTokenRejected) {
			return true
		}
	}
	return false
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
