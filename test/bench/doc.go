// Command bench measures snowauth the way a platform with thousands of
// connections would feel it, and prints the figures as a markdown table
// (stdout) and a JSON file. Run it with `make bench` (BENCH_ARGS passes
// flags) or `go run ./test/bench -h`.
//
// It starts three things on loopback, none of them shared with the tests:
//
//   - the envtest control plane (kube-apiserver and etcd from
//     KUBEBUILDER_ASSETS, the binaries `make test` uses) with snowauth's CRD;
//   - the ServiceNow simulator, in this process, with one OAuth client per
//     connection (so every connection has its own token and its own request
//     counter) and a fixed response latency on the token endpoint
//     (-sim-latency), because a real instance answers in tens to hundreds of
//     milliseconds, not microseconds;
//   - the manager, built from ./cmd and run as a separate process, exactly
//     as it runs in a cluster, so its RSS and CPU time can be read from /proc
//     and its own client-go metrics (rest_client_requests_total by method)
//     count the API requests it makes. Nothing in this program reaches into
//     the manager: it sees what an operator of the cluster would see.
//
// # Scenarios
//
// -scenarios selects any of cold, restart, memory, steady, latency (default
// all). The connections they need are always created; the figures are
// reported only for the selected scenarios. The run order is fixed because
// each scenario needs the state the previous one leaves:
//
//  1. floor (with cold): before the manager starts, a bare controller-runtime
//     client with the manager's QPS, burst and concurrency makes the writes
//     the operator must make for N new connections (N token Secret creates
//     and N status patches). That time is the floor: no operator can be
//     faster with those client limits on this machine at that moment.
//  2. cold: N connections (and their credentials Secrets) are created while
//     the manager runs; the time until all are Ready and the create→Ready
//     latencies are measured, and compared with the floor.
//  3. restart: with every token fresh (30-minute lifespans), the manager is
//     restarted; token requests during its first minute are counted.
//  4. memory: RSS (and the live Go heap, after a forced GC) of a freshly
//     started, settled manager with 0 and with N connections, then with
//     5,000 unrelated 16 KiB Secrets added. Memory is read only after the
//     manager sat unscraped for -settle: a scrape of /metrics allocates per
//     connection.
//  5. steady: the simulator's lifespan drops to -steady-lifespan, a refresh
//     is forced on every connection, then for -steady-duration the program
//     counts token requests per refresh (simulator log), API writes per
//     refresh (manager metrics), and watches every token Secret for an
//     expired token. Before it, every connection is touched once to measure
//     the writes of an idle reconcile.
//  6. latency (after the steady window, while the N connections keep
//     refreshing): one more connection is created at a time and its
//     apply→Ready time measured. Not during the window: a probe's own
//     writes would count as writes per refresh.
//
// Absolute times on a shared machine are noisy; the headline figures are
// ratios and counts taken in one run. -smoke makes everything small (N=20,
// short phases) and checks that the harness produced sane figures; `make
// test` runs it so the harness cannot rot. Performance goals never fail a
// run: they are reported as met or missed. -profile-dir saves the manager's
// CPU, heap and goroutine profiles (pprof, through the manager's
// --pprof-bind-address) for finding why a goal is missed.
//
// No secret is printed: client secrets are random, live only in this
// process, the simulator and the Secrets it creates; the kubeconfig written
// for the manager (a client certificate) is removed at exit.
package main
