#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver and etcd) from Go module
# sources, so tests need no download of prebuilt binaries (setup-envtest
# fetches them from the internet, which air-gapped machines and CI cannot).
#
# Usage: hack/build-envtest.sh OUTDIR
# Writes OUTDIR/kube-apiserver and OUTDIR/etcd. Does nothing when both exist.
# Versions come from the environment (the Makefile pins them):
#   ENVTEST_K8S_VERSION (default 1.37.2) and ENVTEST_ETCD_VERSION (default 3.6.16).
set -euo pipefail

out=${1:?usage: hack/build-envtest.sh OUTDIR}
k8s=${ENVTEST_K8S_VERSION:-1.37.2}
etcd=${ENVTEST_ETCD_VERSION:-3.6.16}
# Staging modules are published as k8s.io/<name> v0.<minor>.<patch>.
staging="v0.${k8s#*.}"

if [[ -x "$out/kube-apiserver" && -x "$out/etcd" ]]; then
  exit 0
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0

build_etcd() {
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init envtest/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v${etcd}" >/dev/null
  go build -trimpath -o "$out/etcd.partial" go.etcd.io/etcd/server/v3
  mv "$out/etcd.partial" "$out/etcd"
}

build_apiserver() {
  mkdir -p "$work/apiserver" && cd "$work/apiserver"
  go mod init envtest/apiserver >/dev/null 2>&1
  # kubernetes' own go.mod replaces every staging module with ./staging/...;
  # a module outside that tree must replace them with the published versions.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v${k8s}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  go mod edit -require="k8s.io/kubernetes@v${k8s}"
  local mod
  for mod in $(go mod edit -json "$gomod" |
    sed -n 's/.*"Path": "\(k8s.io\/[^"]*\)".*/\1/p' | sort -u); do
    case "$mod" in
      k8s.io/kubernetes | k8s.io/sample-cli-plugin | k8s.io/sample-controller) continue ;;
    esac
    if go mod edit -json "$gomod" | grep -q "\"Path\": \"./staging/src/${mod}\""; then
      go mod edit -replace="${mod}=${mod}@${staging}"
    fi
  done
  cat >tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  go mod tidy >/dev/null 2>&1 || true
  go build -trimpath -o "$out/kube-apiserver.partial" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$out/kube-apiserver.partial" "$out/kube-apiserver"
}

[[ -x "$out/etcd" ]] || { echo "building etcd v${etcd} into $out"; build_etcd; }
[[ -x "$out/kube-apiserver" ]] || { echo "building kube-apiserver v${k8s} into $out (a few minutes on first run)"; build_apiserver; }
echo "envtest control plane ready in $out"
