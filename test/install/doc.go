// Package install tests the ways users install snowauth, against a real API
// server (envtest) rather than by reading YAML:
//
//   - the Helm chart in dist/chart, rendered by the pinned helm with its
//     default values and with ci/all-options-values.yaml, and dist/install.yaml
//     (kustomize build config/default) are applied with server-side apply and
//     must be accepted, and the manager's Pod must pass the restricted Pod
//     Security Standard;
//   - the manager, run with a client that impersonates the chart's (or
//     config/rbac's) ServiceAccount instead of a cluster administrator, keeps
//     a token fresh with exactly the RBAC those install, and is refused what
//     it must not do; a namespace-scoped install is refused Secrets outside
//     its namespaces;
//   - the chart's copies of the CRD, the RBAC rules and the alert rules equal
//     config/, and a mistyped value fails with the schema's message.
//
// The tests run helm and kustomize from bin/ (HELM and KUSTOMIZE, which the
// Makefile exports, or the versions pinned in the Makefile). They fail, never
// skip, when a tool is missing: `make test` builds them first.
//
// envtest has no Prometheus Operator: testdata/crds holds minimal
// ServiceMonitor and PrometheusRule CRDs (the operator's schemas reduced to
// the fields snowauth uses, unknown fields rejected) so that the chart's
// monitoring objects are applied and validated too, not skipped.
package install
