// Package controllers holds snowauth's reconciler: for each
// ServiceNowConnection it keeps the token Secret holding a valid ServiceNow
// access token and reports how that goes in status conditions, Events and
// metrics.
//
// The reconcile story is in servicenowconnection_controller.go (Reconcile
// and the steps it calls, in order); the decisions it makes are pure
// functions, table-tested without an API server: when to refresh and how to
// back off (schedule.go), which conditions to report and what an error means
// (status.go), and whether a token request is due (refreshTrigger). Watches,
// the field index and the caches are set up in setup.go; metrics.go computes
// per-connection metrics at scrape time.
//
// It is not a ServiceNow client: all HTTP goes through the TokenSource
// interface, which internal/servicenow implements.
package controllers
