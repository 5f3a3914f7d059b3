// Command kubectl-servicenow is the kubectl plugin `kubectl servicenow`:
// installed on PATH under this name (by krew, as the plugin servicenow,
// or by go install), kubectl runs it for
// `kubectl servicenow status|list|refresh|authorize|version|completion ...`.
//
// It only wires internal/plugin to the process (streams, signals, exit
// code); the commands and their tests live there. It is the one place
// that calls os.Exit, with plugin.ExitCode of the command's error. It is
// not part of the manager's image.
package main
