// Command soak is snowauth's chaos soak: the real manager binary, two
// replicas with leader election, against an envtest API server and two
// ServiceNow simulators (two instance hosts), with N connections whose
// tokens live a short while. For the run's duration it injects faults from
// the reliability matrix at random on each host (a 503, a hang, a dropped
// connection, a rate limit, a hibernation page, malformed JSON, a token-less
// answer), kills the leader with SIGKILL at random, restarts the API server
// (same etcd) at random, starts every manager that exits again as the
// kubelet would, and watches every token Secret. Faults are short next to a token's
// lifetime, so ServiceNow can always issue a token in time: the promise is
// that no application ever sees a token Secret missing, blank or expired.
//
// It prints a table: refreshes, faults injected by kind, expired or blank
// observations (goal 0), token requests per successful refresh, extra
// requests per failover, and the longest time any connection went without a
// valid token. `make soak` runs it at its defaults (a few minutes on a
// 2-core machine); `make test` runs it for seconds as a smoke (-smoke: faults
// on short tokens, no kills or restarts) that fails when the harness breaks or an
// invariant is violated. A leader kill is a fault too: its takeover (the
// Lease's 15 s and a cache sync) must fit in the third of a token's lifetime
// left at its planned refresh. So must an API server restart: the API
// server is away for about 20 s, the leader gives up its Lease after its
// 10 s renew deadline and exits, and a standby takes the Lease 15 s after
// the API server is back (client-go counts a Lease's duration from when a
// candidate sees it change, and the leader's last renewal is seen only
// then), about 40 s after the restart began. -lifespan's default (3 min)
// leaves 60 s; ServiceNow's 30 minutes leave 10 minutes.
//
// It is not a unit test: it sends traffic only to the loopback addresses of
// the API server, the simulators and the managers it starts, bounded by
// -duration, and stops by itself.
package main
