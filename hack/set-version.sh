#!/usr/bin/env bash
# Writes the version in VERSION (one line, x.y.z) everywhere a shipped
# manifest names it: the chart's version and appVersion (which the chart's
# image tag defaults to) and the image tag of config/manager, which
# dist/install.yaml is built from. Run by `make manifests`; `make verify`
# fails when the outputs are stale. The binaries get it at link time
# (internal/version).
set -euo pipefail
cd "$(dirname "$0")/.."
version=${VERSION:-$(cat VERSION)}
if ! [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "VERSION '$version' is not a semantic version x.y.z" >&2
  exit 1
fi
sed -i -E "s/^version: .*/version: $version/; s/^appVersion: .*/appVersion: \"$version\"/" dist/chart/Chart.yaml
sed -i -E "s/^(  newTag: ).*/\1\"$version\"/" config/manager/kustomization.yaml config/authorization/kustomization.yaml
