// Command kubectl-servicenow is the kubectl plugin `kubectl servicenow`:
// installed on PATH under this name, kubectl runs it for
// `kubectl servicenow status|list|refresh ...`.
//
// It only wires internal/plugin to the process (streams, signals, exit
// code); the commands and their tests live there. It is not part of the
// manager's image.
package main
