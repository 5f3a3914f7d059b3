// Package plugin is the kubectl plugin `kubectl servicenow`: it shows how a
// ServiceNowConnection's token is doing (status, list) and asks snowauth for
// an immediate refresh (refresh), optionally waiting for the outcome.
//
// It talks to the API server with the user's kubeconfig and RBAC (the
// standard kubectl flags come from cli-runtime's ConfigFlags), reads
// connections and their events.k8s.io/v1 Events, and writes only the
// servicenow.snowauth.dev/refresh-requested-at annotation. It never reads a
// Secret: the token Secret is shown by name, so no token can be printed.
//
// Rendering is separate from fetching: RenderStatus and RenderList write
// text for given objects and a given time, so their output is tested without
// a cluster. cmd/kubectl-servicenow only wires NewCommand to the process.
//
// It is not an operator client library: nothing in the manager imports it.
package plugin
