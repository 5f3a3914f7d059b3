#!/usr/bin/env bash
# Writes everything a snowauth release publishes into $RELEASE_DIR:
#   install-crds.yaml, install.yaml   the kustomize install, image tag = version
#   snowauth-<version>.tgz            the packaged Helm chart
#   kubectl-servicenow_v<version>_<os>_<arch>.tar.gz
#                                     the plugin for each of $PLATFORMS
#   servicenow.yaml                   a krew plugin manifest pointing at those
#   checksums.txt                     SHA-256 of every file above
#   RELEASE_NOTES.md                  this version's section of CHANGELOG.md
# Run by `make release VERSION=x.y.z`. It generates nothing in the tree: it
# refuses a VERSION that is not the VERSION file's (bump VERSION and
# CHANGELOG.md, run `make manifests`, commit, then release), so what it
# publishes is what is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:?}" "${RELEASE_DIR:?}" "${KUSTOMIZE:?}" "${HELM:?}"
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}
REPO_URL=${REPO_URL:-https://github.com/snowauth/snowauth}

if [[ $VERSION != "$(cat VERSION)" ]]; then
  echo "VERSION=$VERSION is not the version in the VERSION file ($(cat VERSION)): bump VERSION and CHANGELOG.md, run 'make manifests', commit, then release" >&2
  exit 1
fi
notes=$(awk -v v="$VERSION" '
  $0 ~ "^## \\[" v "\\]" { on = 1; next }
  on && /^## \[/ { exit }
  on { print }
' CHANGELOG.md)
if [[ -z ${notes//[[:space:]]/} ]]; then
  echo "CHANGELOG.md has no section '## [$VERSION]'" >&2
  exit 1
fi

rm -rf "$RELEASE_DIR"
mkdir -p "$RELEASE_DIR"
out=$(cd "$RELEASE_DIR" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '%s\n' "$notes" > "$out/RELEASE_NOTES.md"

# The kustomize install, as make build-installer writes it.
hack/build-installer.sh "$out/install-crds.yaml" "$out/install.yaml" "snowauth/manager:$VERSION"

"$HELM" package dist/chart --version "$VERSION" --app-version "$VERSION" --destination "$out" > /dev/null

# The plugin, one archive a platform, each with the licence.
platforms_yaml=""
for platform in $PLATFORMS; do
  os=${platform%/*} arch=${platform#*/}
  exe=kubectl-servicenow
  [[ $os == windows ]] && exe+=.exe
  dir="$work/plugin-$os-$arch"
  mkdir -p "$dir"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
    -ldflags "-s -w -X github.com/snowauth/snowauth/internal/version.version=$VERSION" \
    -o "$dir/$exe" ./cmd/kubectl-servicenow
  cp LICENSE "$dir/"
  archive="kubectl-servicenow_v${VERSION}_${os}_${arch}.tar.gz"
  tar --sort=name --mtime='@0' --owner=0 --group=0 --numeric-owner -C "$dir" -czf "$out/$archive" "$exe" LICENSE
  sum=$(sha256sum "$out/$archive" | cut -d' ' -f1)
  platforms_yaml+="  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: $REPO_URL/releases/download/v$VERSION/$archive
    sha256: $sum
    bin: $exe
    files:
    - from: $exe
      to: .
    - from: LICENSE
      to: .
"
done

cat > "$out/servicenow.yaml" <<KREW
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: servicenow
spec:
  version: v$VERSION
  homepage: $REPO_URL
  shortDescription: Status, refresh and authorisation of snowauth's ServiceNow connections
  description: |
    kubectl servicenow shows the state of snowauth's ServiceNowConnections
    (which keep ServiceNow OAuth tokens fresh in Secrets), asks for a refresh
    and waits for it, and prints the link a person opens to authorise an
    AuthorizationCode connection.
  platforms:
$platforms_yaml
KREW

(cd "$out" && sha256sum -- *.yaml *.tgz *.tar.gz RELEASE_NOTES.md > checksums.txt)
echo "snowauth $VERSION: $(ls "$out" | wc -l) files in $RELEASE_DIR"
