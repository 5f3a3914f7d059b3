// Package reliability tests what applications reading snowauth's token
// Secrets notice when the machinery around the operator misbehaves: a leader
// killed in the middle of a token request, a graceful hand-over between
// replicas, an API server restart, other writers racing snowauth for the
// same objects (409 conflicts), and a manager whose clock is minutes off.
//
// Every test runs in its own namespace against an envtest API server (the
// API server restart gets an envtest of its own) and its own ServiceNow
// simulator, and samples each token Secret every 50 ms throughout: a
// Secret must never be missing or blank, and never hold an expired token
// while ServiceNow can issue tokens. The leader-election tests run the real
// manager binary twice; the others run cmd/main.go's wiring in-process
// (internal/testenv), which lets them skew the reconciler's clock and count
// what the manager writes. Token requests are counted by the simulator.
//
// It needs KUBEBUILDER_ASSETS (`make test` sets it).
package reliability
