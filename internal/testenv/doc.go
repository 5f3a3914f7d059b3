// Package testenv starts a real Kubernetes API server (envtest: kube-apiserver
// and etcd, built from source by hack/build-envtest.sh) with snowauth's CRDs
// installed, for the tests of other packages.
//
// It serves the tests, `make demo` and the benchmark; the manager never
// imports it. Each test takes a fresh namespace from Env.Namespace so cases
// never see each other's objects.
package testenv
