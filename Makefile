# snowauth Makefile: `make help` lists the targets.

# snowauth's version: VERSION, or `make release VERSION=x.y.z`. It is the
# binaries' version (linked into internal/version), the chart's version and
# appVersion and the image tag (hack/set-version.sh).
VERSION ?= $(shell cat VERSION)
export VERSION
LDFLAGS := -X github.com/snowauth/snowauth/internal/version.version=$(VERSION)

# Image to build and deploy.
IMG ?= snowauth/manager:$(VERSION)

# Pinned tool versions: bumping one rebuilds it, because the binary name
# carries the version.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.7.1
GOLANGCI_LINT_VERSION ?= v2.15.0
PROMTOOL_VERSION ?= v0.316.0
HELM_VERSION ?= v3.22.0

# The envtest control plane, built from Go module sources by
# hack/build-envtest.sh (no download of prebuilt binaries). Set
# KUBEBUILDER_ASSETS to a folder with kube-apiserver and etcd to use your own.
ENVTEST_K8S_VERSION ?= 1.37.2
ENVTEST_ETCD_VERSION ?= 3.6.16

GOOS ?= $(shell go env GOOS)
GOARCH ?= $(shell go env GOARCH)

# Run every recipe in bash with errors that stop it.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
PROMTOOL ?= $(LOCALBIN)/promtool-$(PROMTOOL_VERSION)
# The Prometheus server, from the same module as promtool: test/alerts
# scrapes a live manager with it and evaluates the shipped rules.
PROMETHEUS ?= $(LOCALBIN)/prometheus-$(PROMTOOL_VERSION)
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
ENVTEST_DIR ?= $(LOCALBIN)/k8s/$(ENVTEST_K8S_VERSION)-$(GOOS)-$(GOARCH)
KUBEBUILDER_ASSETS ?= $(ENVTEST_DIR)
export KUBEBUILDER_ASSETS
# test/install renders the chart and config/ with these, test/alerts runs
# Prometheus (and each fails without them).
export HELM KUSTOMIZE PROMETHEUS

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show the targets and what they do.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests and the PrometheusRule under config/, and the Helm chart's copies of them.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases
	hack/set-version.sh
	hack/gen-prometheusrule.sh
	hack/gen-chart.sh

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deep-copy code for the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: envtest
envtest: $(ENVTEST_DIR)/kube-apiserver ## Build the envtest control plane (kube-apiserver, etcd) from source into bin/k8s/.

$(ENVTEST_DIR)/kube-apiserver:
	ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) ENVTEST_ETCD_VERSION=$(ENVTEST_ETCD_VERSION) hack/build-envtest.sh $(ENVTEST_DIR)

.PHONY: test
test: manifests generate fmt vet envtest test-rules helm-lint bench-smoke soak-smoke $(KUSTOMIZE) $(PROMETHEUS) ## Run all tests: Go tests against a real API server (envtest) and the ServiceNow simulator, the alert rules on a real Prometheus and with promtool, the Helm chart lint and a smoke run of the benchmarks.
	go test ./... -count=1 -coverprofile cover.out

.PHONY: test-rules
test-rules: $(PROMTOOL) ## Check the alert rules and run their unit tests with promtool.
	$(PROMTOOL) check rules config/prometheus/snowauth.rules.yaml
	$(PROMTOOL) test rules config/prometheus/tests/alerts_test.yaml

# Flags for `make bench`, e.g. BENCH_ARGS="-n 200 -scenarios cold,memory".
BENCH_ARGS ?=

.PHONY: bench
bench: envtest ## Run the benchmarks (test/bench, docs/benchmarks.md; N=1,000, about 15 minutes): table on stdout, JSON in bin/bench/. Flags: BENCH_ARGS.
	go run ./test/bench $(BENCH_ARGS)

.PHONY: bench-smoke
bench-smoke: envtest ## Run the benchmark harness small and quick (N=20); fails if the harness breaks, never on performance goals.
	go run ./test/bench -smoke

# Flags for `make soak`, e.g. SOAK_ARGS="-n 500 -duration 10m -seed 42".
SOAK_ARGS ?=

.PHONY: soak
soak: envtest ## Run the chaos soak (test/soak, docs/reliability.md; N=200, a few minutes): random ServiceNow faults, leader kills and API server restarts, every token Secret watched. Flags: SOAK_ARGS.
	go run ./test/soak $(SOAK_ARGS)

.PHONY: soak-smoke
soak-smoke: envtest ## Run the chaos soak small and quick (N=10, 25 s of faults on 24 s tokens, no kills or restarts); fails if the harness breaks or an invariant is violated.
	go run ./test/soak -smoke

.PHONY: helm-lint
helm-lint: $(HELM) ## Lint the Helm chart (dist/chart) and render it with the default values and with ci/all-options-values.yaml.
	$(HELM) lint --strict dist/chart
	$(HELM) lint --strict dist/chart --values dist/chart/ci/all-options-values.yaml
	$(HELM) template snowauth dist/chart --namespace snowauth-system > /dev/null
	$(HELM) template snowauth dist/chart --namespace snowauth-system --values dist/chart/ci/all-options-values.yaml > /dev/null

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run

.PHONY: verify
verify: manifests generate build-installer ## Regenerate code and manifests; fail if that changed anything git tracks.
	go mod tidy
	@if [ -n "$$(git status --porcelain -- . ':!bin' ':!cover.out')" ]; then \
		echo "generated files are stale; run 'make manifests generate build-installer' and 'go mod tidy', then commit:"; \
		git status --porcelain -- . ':!bin' ':!cover.out'; git --no-pager diff --stat; exit 1; \
	fi

##@ Try it

.PHONY: demo
demo: envtest build ## Run snowauth on this machine: API server, ServiceNow simulator, manager and a sample connection (DEMO_ARGS=-ci exits once a refresh was seen).
	go run ./hack/demo $(DEMO_ARGS)

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager binary into bin/manager.
	go build -ldflags "$(LDFLAGS)" -o bin/manager ./cmd

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-servicenow; copy it onto PATH for `kubectl servicenow`.
	go build -ldflags "$(LDFLAGS)" -o bin/kubectl-servicenow ./cmd/kubectl-servicenow

.PHONY: run
run: manifests generate fmt vet ## Run the manager on this machine against the current kubeconfig.
	go run -ldflags "$(LDFLAGS)" ./cmd $(RUN_ARGS)

# Where build-installer writes; `make deploy` renders into bin/ instead.
INSTALLER ?= dist/install.yaml
INSTALLER_CRDS ?= dist/install-crds.yaml

.PHONY: build-installer
build-installer: manifests $(KUSTOMIZE) ## Write dist/install-crds.yaml (config/crd) and dist/install.yaml (config/default: RBAC, manager) with image IMG.
	hack/build-installer.sh $(INSTALLER_CRDS) $(INSTALLER) $(IMG)

# Where `make release` writes, and the plugin platforms it builds.
RELEASE_DIR ?= $(LOCALBIN)/release/v$(VERSION)
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64

.PHONY: release
release: $(KUSTOMIZE) $(HELM) ## Write a release's artifacts into RELEASE_DIR (bin/release/vVERSION): install.yaml, install-crds.yaml, the chart, the plugin per platform, a krew manifest, checksums, release notes. VERSION must be the VERSION file's.
	RELEASE_DIR=$(RELEASE_DIR) PLATFORMS="$(PLATFORMS)" hack/release.sh

.PHONY: docker-build
docker-build: ## Build the manager image (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the manager image.
	docker push $(IMG)

##@ Deployment

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRD into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | kubectl apply --server-side -f -

.PHONY: uninstall
uninstall: manifests $(KUSTOMIZE) ## Remove the CRD: this deletes every ServiceNowConnection and, with them, every token Secret they own.
	$(KUSTOMIZE) build config/crd | kubectl delete --ignore-not-found -f -

.PHONY: deploy
deploy: ## Deploy the CRD and the manager with image IMG to the cluster of the current kubeconfig (config/ is left untouched).
	$(MAKE) --no-print-directory build-installer INSTALLER=$(LOCALBIN)/deploy.yaml INSTALLER_CRDS=$(LOCALBIN)/deploy-crds.yaml IMG=$(IMG)
	kubectl apply --server-side -f $(LOCALBIN)/deploy-crds.yaml
	kubectl apply --server-side -f $(LOCALBIN)/deploy.yaml

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the manager; the CRD, the connections and their token Secrets stay (see `make uninstall`).
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found -f -

##@ Tools (pinned, built from Go module sources into bin/)

.PHONY: controller-gen kustomize golangci-lint promtool prometheus helm
controller-gen: $(CONTROLLER_GEN) ## Build controller-gen.
kustomize: $(KUSTOMIZE) ## Build kustomize.
golangci-lint: $(GOLANGCI_LINT) ## Build golangci-lint.
promtool: $(PROMTOOL) ## Build promtool (checks and unit-tests the alert rules).
prometheus: $(PROMETHEUS) ## Build the Prometheus server (test/alerts runs the shipped rules on it).
helm: $(HELM) ## Build helm (lints and renders the chart).

$(HELM):
	$(call go-install-tool,$@,helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))

$(CONTROLLER_GEN):
	$(call go-install-tool,$@,sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

$(KUSTOMIZE):
	$(call go-install-tool,$@,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

$(PROMTOOL):
	$(call go-install-tool,$@,github.com/prometheus/prometheus/cmd/promtool,$(PROMTOOL_VERSION))

$(PROMETHEUS):
	$(call go-install-tool,$@,github.com/prometheus/prometheus/cmd/prometheus,$(PROMTOOL_VERSION))

$(GOLANGCI_LINT):
	$(call go-install-tool,$@,github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

# go-install-tool builds package $(2) at version $(3) into file $(1).
define go-install-tool
@mkdir -p $(LOCALBIN); \
echo "building $(2)@$(3)"; \
tmp=$$(mktemp -d); \
GOBIN=$$tmp GOWORK=off GOFLAGS= go install $(2)@$(3); \
mv $$tmp/$$(basename $$(echo $(2) | sed 's|/v[0-9]*$$||')) $(1); \
rm -rf $$tmp
endef
