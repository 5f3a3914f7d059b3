// Package memory_test proves that the manager's memory does not grow with
// what tenants write: labelled look-alike Secrets of 1 MiB and connections
// carrying large annotations add almost nothing to the live heap of a
// manager watching them.
//
// It is a package of its own so that its one test runs alone in its
// process: the live heap it measures is the manager's and the test's, not
// that of other tests running in parallel.
package memory_test
