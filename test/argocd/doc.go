// Package argocd tests the Argo CD resource customizations that snowauth ships
// in dist/argocd/resource_customizations (a health check and a refresh action
// for ServiceNowConnection, laid out as in Argo CD's own
// resource_customizations directory so that they can be proposed upstream
// unchanged). It holds no code, only the test.
//
// The test finds every health_test.yaml and actions/action_test.yaml there
// and runs the Lua scripts with github.com/yuin/gopher-lua, the interpreter
// Argo CD embeds, set up the way Argo CD's util/lua sets it up:
//
//   - the resource is the global table obj, converted from the object as
//     Argo CD converts it (integers and floats become numbers);
//   - only the package, base and table libraries are opened, plus Argo CD's
//     safe os module (date and time only, reached with require("os")): what
//     a script from argocd-cm gets, and what resource actions always get.
//     Every script also runs with all standard libraries open, as Argo CD
//     runs its built-in health checks;
//   - a script has one second;
//   - what it returns is encoded to JSON as Argo CD encodes it (an empty
//     table becomes [], numbers become floats) and read back as a health
//     status, a list of actions or the patched object.
//
// Each case is a subtest named after its description; status and message
// must equal the YAML's exactly. An action's output must equal the expected
// object except where the expected object holds the timestamp placeholder
// 0001-01-01T00:00:00Z (upstream's convention): there the output must hold
// the current time in RFC 3339. The test also checks that the argocd-cm
// snippet in docs/gitops.md is a verbatim copy of the scripts.
//
// Run it with: go test ./test/argocd/
package argocd
