// Package plugin is the kubectl plugin `kubectl servicenow`: it shows how
// ServiceNowConnections' tokens are doing (status, list), asks snowauth for
// an immediate refresh of one connection or many (refresh), optionally
// waiting for the outcome, asks snowauth to revoke a connection's access
// token that leaked and store a new one (revoke), prints the link that authorises an
// AuthorizationCode connection (authorize), prints the certificate of a
// JWTBearer connection's provided key (jwt-certificate), and prints its own
// version and shell completion scripts (version, completion).
//
// It behaves like kubectl: the connection flags come from cli-runtime's
// ConfigFlags, -o json|yaml prints the objects with cli-runtime's printers
// as kubectl get does, -l and -A select, and errors carry an exit code
// (ExitError, ExitCode) that cmd/kubectl-servicenow exits with: 0 ok,
// 1 error, 2 usage error, 3 not Ready after --wait.
//
// It talks to the API server with the user's kubeconfig and RBAC, reads
// connections and their events.k8s.io/v1 Events, and writes only the
// servicenow.snowauth.dev/refresh-requested-at, revoke-requested-at and
// authorization-requested-at annotations. It reads no Secret but the one
// that holds an authorization link (authorize): the token Secret is shown
// by name, so no token can be printed.
// Text for people, and every error, goes through Printable, so that what
// the cluster holds cannot drive the terminal.
//
// Rendering is separate from fetching: RenderStatus and RenderList write
// text for given objects and a given time, so their output is tested without
// a cluster. cmd/kubectl-servicenow only wires NewCommand to the process.
//
// It is not an operator client library: nothing in the manager imports it.
package plugin
