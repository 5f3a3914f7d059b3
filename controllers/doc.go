// Package controllers holds snowauth's reconciler: for each
// ServiceNowConnection it keeps the token Secret holding a valid ServiceNow
// access token and reports how that goes in status conditions, Events and
// metrics.
//
// The story is in reconcile.go: gather (tokensecret.go, freshness.go,
// authorization.go), decide (trigger.go), act (internal/credentials, kept.go,
// internal/servicenow) and report (status.go). The decisions are pure
// functions, table-tested without an API server: whether a token request is
// due (refreshTrigger), when to refresh and how to back off (schedule.go),
// what an error means (classify, errors.go) and which conditions to report
// (conditions, status.go). AddConnectionController (setup.go) is the one
// wiring of watches, caches and metrics, used by cmd/main.go and the tests;
// metrics.go computes per-connection metrics at scrape time.
// docs/architecture.md follows one reconcile through these files.
//
// It is not a ServiceNow client: all HTTP goes through the TokenSource
// interface, which internal/servicenow implements.
package controllers
