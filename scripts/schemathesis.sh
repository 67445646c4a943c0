#!/usr/bin/env bash
# Property-based test of the HTTP API against its own OpenAPI document: schemathesis
# (PyPI, pinned) generates requests from /v1/openapi.json — valid ones and deliberately
# invalid ones — sends them to a real coordinator and checks every answer (`--checks all`:
# no 5xx, documented status codes, content types and schemas, invalid data refused, valid
# data accepted, 401 without the token, 405 with `Allow` for undocumented methods, …).
# Exits non-zero on any failure.
#
# The coordinator is the `mailfleet` binary, with a database and queue prefix of its own
# (both removed afterwards) and no worker: connection tests answer 504 after
# MAILFLEET_RPC_TIMEOUT_SECS=1 (documented), sent messages wait in the queue.
# `DELETE /v1/users/{id}` runs apart, acting as an administrator of its own, since it may
# delete the user it acts as.
#
#   scripts/schemathesis.sh [--locked]      CI's run (needs Postgres and RabbitMQ); arguments
#                                           go to `cargo build`
#   SCHEMATHESIS_EXAMPLES=200 SCHEMATHESIS_SEED=7 scripts/schemathesis.sh   a longer one
#
# schemathesis is installed once into a venv under $MAILFLEET_TOOLS_DIR (default
# /var/cache/mailfleet-tools as root, else ~/.cache/mailfleet-tools), as deploy/check.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-30}
SEED=${SCHEMATHESIS_SEED:-20261204}

say() { printf 'schemathesis: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

if [[ -n ${MAILFLEET_TOOLS_DIR:-} ]]; then
  TOOLS=$MAILFLEET_TOOLS_DIR
elif [[ $EUID -eq 0 ]]; then
  TOOLS=/var/cache/mailfleet-tools
else
  TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/mailfleet-tools
fi
mkdir -p "$TOOLS"

# ---------------------------------------------------------------- schemathesis
VENV=$TOOLS/venv-schemathesis-$SCHEMATHESIS_VERSION
if [[ ! -f $VENV/.complete ]]; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    [[ $EUID -eq 0 ]] || die "python3 has no venv module: apt-get install python3-venv"
    say "apt-get install python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; } \
      || die "apt-get install python3-venv failed"
  fi
  say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    || die "pip install schemathesis failed"
  touch "$VENV/.complete"
fi

# ---------------------------------------------------------------- a coordinator of its own
WORK=$(mktemp -d /tmp/mailfleet-schemathesis.XXXXXX)
DB=mailfleet_schemathesis_$$
export MAILFLEET_QUEUE_PREFIX="mailfleet-schemathesis-$$"
COORD=
cleanup() {
  local rc=$?
  if [[ -n $COORD ]]; then
    kill -TERM "$COORD" 2>/dev/null || true
    wait "$COORD" 2>/dev/null || true
  fi
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  if command -v rabbitmqctl >/dev/null; then
    for q in sync refresh_folders send test_connection dead; do
      rabbitmqctl -q delete_queue "$MAILFLEET_QUEUE_PREFIX.$q" >/dev/null 2>&1 || true
    done
    rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$MAILFLEET_QUEUE_PREFIX.dlx\">>), false, <<\"schemathesis\">>)." >/dev/null 2>&1 || true
  fi
  (( rc == 0 )) || [[ ! -f $WORK/coordinator.log ]] || { say "coordinator log (last lines):"; tail -n 20 "$WORK/coordinator.log" >&2; }
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

cargo build -q -p mailfleet "$@"
# A copy: another build in the shared target directory can't swap it under the run.
TARGET=$(cargo metadata -q --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cp "$TARGET/debug/mailfleet" "$WORK/mailfleet"
BIN=$WORK/mailfleet

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
API=http://127.0.0.1:$PORT
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
export MAILFLEET_API_ADDR="127.0.0.1:$PORT"
export MAILFLEET_API_TOKEN="schemathesis-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export MAILFLEET_SECRET_KEY=$(head -c 32 /dev/urandom | base64)
export MAILFLEET_RPC_TIMEOUT_SECS=1
export RUST_LOG=${RUST_LOG:-warn}

"$BIN" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "migrate failed"; }
"$BIN" coordinator --sync-interval-secs 3600 >"$WORK/coordinator.log" 2>&1 &
COORD=$!
deadline=$((SECONDS + 60))
until curl -sf "$API/readyz" >/dev/null 2>&1; do
  kill -0 "$COORD" 2>/dev/null || die "the coordinator exited"
  (( SECONDS < deadline )) || die "the coordinator was not ready within 60 s"
  sleep 0.1
done

api() { curl -sf -H "Authorization: Bearer $MAILFLEET_API_TOKEN" -H 'Content-Type: application/json' "$@"; }
new_admin() {
  api -X POST "$API/v1/users" -d "{\"email\":\"$1-$$@crm.example.test\",\"is_admin\":true}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}
ADMIN=$(new_admin schemathesis-admin) || die "could not create the acting user"
DELETER=$(new_admin schemathesis-deleter) || die "could not create the deleting user"

# ---------------------------------------------------------------- the runs
CONFIG=$PWD/scripts/schemathesis.toml
# The document as served, with one change for the run: the acting user header is declared
# as a second credential (an apiKey scheme next to the bearer token) instead of a parameter.
# schemathesis sends a credential as given and tests its absence (401), where it would
# generate deliberately wrong values for a parameter, have them replaced by the one fixed
# header the run must send, and report the accepted requests as schema violations.
curl -sf "$API/v1/openapi.json" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
doc["components"]["securitySchemes"]["acting_user"] = {
    "type": "apiKey", "in": "header", "name": "X-Mailfleet-User"}
for item in doc["paths"].values():
    for op in item.values():
        params = op.get("parameters", [])
        acting = [p for p in params if p["in"] == "header" and p["name"].lower() == "x-mailfleet-user"]
        if acting:
            op["parameters"] = [p for p in params if p not in acting]
            op["security"] = [{"bearer": [], "acting_user": []}]
json.dump(doc, sys.stdout)
' >"$WORK/openapi.json" || die "could not read the OpenAPI document"
# --generation-allow-x00 false: the API refuses U+0000 in any string (documented: Postgres
# can't store it), which a schema can't say short of a pattern on every string.
st() {
  local log=$WORK/run-$1.log
  # From the work directory: schemathesis leaves a .schemathesis/ folder where it runs.
  (cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$CONFIG" \
    run "$WORK/openapi.json" --url "$API" \
    --checks all \
    --header "Authorization: Bearer $MAILFLEET_API_TOKEN" \
    --header "X-Mailfleet-User: $1" \
    --max-examples "$EXAMPLES" --seed "$SEED" \
    --generation-database none \
    --generation-allow-x00 false \
    --request-timeout 10 \
    --workers 1 \
    --no-color \
    "${@:2}") | tee "$log"
  return "${PIPESTATUS[0]}"
}
status=0
say "all operations but DELETE /v1/users/{id}, acting as administrator $ADMIN"
st "$ADMIN" --exclude-operation-id delete_user || status=1
say "DELETE /v1/users/{id}, acting as administrator $DELETER (who may delete themself)"
st "$DELETER" --include-operation-id delete_user || status=1
# One line for both runs: test cases generated, operations tested, failures.
cat "$WORK"/run-*.log | python3 -c '
import re, sys
text = sys.stdin.read()
cases = sum(int(n) for n in re.findall(r"^  (\d+) generated", text, re.M))
ops = sum(int(n) for n in re.findall(r"^  Tested: (\d+)", text, re.M))
failures = sum(int(n) for n in re.findall(r"found (\d+) unique failure", text))
print(f"schemathesis: {cases} test cases on {ops} operations, {failures} failures")
' >&2
exit "$status"
