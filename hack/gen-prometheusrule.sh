#!/usr/bin/env bash
# Wraps config/prometheus/snowauth.rules.yaml (a Prometheus rule file, which
# promtool tests) into a PrometheusRule for the Prometheus Operator, so the
# two can never drift. Run by `make manifests`; `make verify` checks it.
set -euo pipefail
cd "$(dirname "$0")/.."
src=config/prometheus/snowauth.rules.yaml
{
  echo "# Generated from snowauth.rules.yaml by hack/gen-prometheusrule.sh. DO NOT EDIT."
  echo "apiVersion: monitoring.coreos.com/v1"
  echo "kind: PrometheusRule"
  echo "metadata:"
  echo "  labels:"
  echo "    app.kubernetes.io/name: snowauth"
  echo "    app.kubernetes.io/managed-by: kustomize"
  echo "  name: alert-rules"
  echo "  namespace: system"
  echo "spec:"
  grep -v '^#' "$src" | sed 's/^/  /'
} > config/prometheus/prometheusrule.yaml
