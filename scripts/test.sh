#!/usr/bin/env bash
# The full test suite against real services: brings up Dovecot and Postfix (and checks
# Postgres and RabbitMQ), then runs every test with cargo-nextest (cargo test without it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services-up.sh
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "cargo-nextest not found; using cargo test (install it: cargo install cargo-nextest)" >&2
  exec cargo test --workspace --no-fail-fast "$@"
fi
