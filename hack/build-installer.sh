#!/usr/bin/env bash
# Writes snowauth's two install files from config/: $1 gets config/crd (the
# CRD, installed on its own), $2 gets config/default (RBAC, the policy, the
# manager) with the manager image $3. Run by `make build-installer` (into
# dist/) and hack/release.sh (into a release). The image is set in a
# throwaway overlay, so config/ is never edited. Needs KUSTOMIZE.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUSTOMIZE:?}"
crds=$1 install=$2 image=$3
mkdir -p "$(dirname "$crds")" "$(dirname "$install")" bin
{ echo "# snowauth's CRD: kubectl apply --server-side -f install-crds.yaml, before install.yaml. Deleting it deletes every"
  echo "# ServiceNowConnection and their token Secrets. Generated from config/crd by hack/build-installer.sh. DO NOT EDIT."
  "$KUSTOMIZE" build config/crd; } > "$crds"
tmp=$(mktemp -d bin/installer.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
printf 'resources:\n- %s\n' "$(realpath --relative-to="$tmp" config/default)" > "$tmp/kustomization.yaml"
(cd "$tmp" && "$KUSTOMIZE" edit set image "snowauth/manager=$image")
{ echo "# snowauth: kubectl apply --server-side -f install.yaml, after install-crds.yaml. Deleting it leaves the CRD, the"
  echo "# connections and their token Secrets. Generated from config/default by hack/build-installer.sh. DO NOT EDIT."
  "$KUSTOMIZE" build "$tmp"; } > "$install"
