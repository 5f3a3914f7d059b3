// Package alerts tests snowauth's shipped alert rules end to end: the real
// manager binary (two replicas, with leader election) runs against an
// envtest API server and the ServiceNow simulator, a real Prometheus
// server scrapes both replicas with the scrape configuration the Prometheus
// Operator generates for snowauth's ServiceMonitor, and evaluates
// config/prometheus/snowauth.rules.yaml with its `for:` durations
// shortened. promtool's unit tests (make test-rules) cover each rule's
// logic on series fed in directly; this package covers what only a scrape
// shows: the labels that survive the Operator's relabelling, and that
// standbys do not double what the leader exports.
//
// It needs PROMETHEUS (the server binary, `make prometheus`) and
// KUBEBUILDER_ASSETS; `make test` sets both.
package alerts
