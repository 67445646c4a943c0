#!/usr/bin/env bash
# The full test suite against real services: brings up Dovecot and Postfix (and checks
# Postgres and RabbitMQ), runs every test with cargo-nextest (cargo test without it), then
# the property-based run of the HTTP API against its OpenAPI document (scripts/schemathesis.sh;
# MAILFLEET_SCHEMATHESIS=0 skips it). Arguments go to nextest (or cargo test); `--locked`
# also to the schemathesis run's build. Fails if either fails; both always run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services-up.sh
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  echo "cargo-nextest not found; using cargo test (install it: cargo install cargo-nextest)" >&2
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
if [[ ${MAILFLEET_SCHEMATHESIS:-1} != 0 ]]; then
  build=()
  for a in "$@"; do [[ $a == --locked ]] && build=(--locked); done
  echo "== schemathesis (scripts/schemathesis.sh)"
  scripts/schemathesis.sh "${build[@]}" || { s=$?; (( status )) || status=$s; }
fi
exit "$status"
