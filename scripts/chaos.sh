#!/usr/bin/env bash
# Chaos run: the initial sync of one mailbox by two worker processes while a random worker is
# SIGKILLed at random moments (and restarted) and RabbitMQ is restarted once, against a clean
# run of the same sync. Prints Jepsen-style counters; exits non-zero unless nothing was lost,
# duplicated or dead-lettered.
#   scripts/chaos.sh            short form (CI): 2,000 messages, 4 kills
#   scripts/chaos.sh --long     by hand: 10,000 messages, 12 kills, release build
set -euo pipefail
cd "$(dirname "$0")/.."
N=2000 KILLS=4 PROFILE=dev
if [[ ${1:-} == --long ]]; then N=10000 KILLS=12 PROFILE=release; fi
RUN=${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}
WORK=$(mktemp -d /tmp/mailfleet-chaos.XXXXXX)
# Every process started is recorded here, also by the subshell that restarts workers.
cleanup() {
  [[ -f $WORK/pids ]] && while read -r p; do kill -9 "$p" 2>/dev/null || true; done <"$WORK/pids"
  rm -rf "$WORK"
}
trap cleanup EXIT

scripts/services-up.sh >/dev/null
if [[ $PROFILE == release ]]; then cargo build --release -q -p mailfleet; DIR=release; else cargo build -q -p mailfleet; DIR=debug; fi
BIN="${CARGO_TARGET_DIR:-target}/$DIR/mailfleet"

ADDR="chaos-$(date +%s)@example.test"
PASS="chaos-pass-$RANDOM"
"$BIN" dev-seed --address "$ADDR" --password "$PASS" --messages "$N" --span-days 150 >/dev/null

export MAILFLEET_SECRET_KEY=$(head -c 32 /dev/urandom | base64)
export MAILFLEET_API_TOKEN="chaos-token"
export MAILFLEET_API_ADDR="127.0.0.1:18090"
export MAILFLEET_EXTRA_CA_FILE="$RUN/tls/ca.pem"
export MAILFLEET_SYNC_SLICE_SECS=2 MAILFLEET_LEASE_SECS=3 MAILFLEET_SYNC_BATCH=100 MAILFLEET_WORKER_SLOTS=2
export MAILFLEET_SCHEDULER_TICK_MS=500 MAILFLEET_HEALTH_ADDR=127.0.0.1:0
export RUST_LOG=${RUST_LOG:-error}
DB=mailfleet_chaos
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB"
psql_q() { psql -h 127.0.0.1 -U postgres -d "$DB" -Atc "$1"; }
# Requests after the user exists are made as that user (the acting user header).
api() {
  local acting=()
  [[ -n ${ACT:-} ]] && acting=(-H "X-Mailfleet-User: $ACT")
  curl -sf -H "Authorization: Bearer $MAILFLEET_API_TOKEN" "${acting[@]}" -H 'Content-Type: application/json' "$@"
}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

start_worker() {
  "$BIN" worker >>"$WORK/worker-$1.log" 2>&1 &
  WORKER[$1]=$!
  echo "$!" >>"$WORK/pids"
}

# One sync of the mailbox, from a fresh database; with chaos when $1 = chaos.
run() {
  local phase=$1
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
  "$BIN" migrate >/dev/null 2>&1
  export MAILFLEET_QUEUE_PREFIX="mailfleet-chaos-$phase-$$"
  "$BIN" coordinator --sync-interval-secs 3600 >>"$WORK/coordinator-$phase.log" 2>&1 &
  local coord=$!; echo "$coord" >>"$WORK/pids"
  for _ in $(seq 1 100); do api "http://$MAILFLEET_API_ADDR/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  declare -gA WORKER=()
  start_worker 0; start_worker 1
  local user account
  ACT=
  user=$(api -X POST "http://$MAILFLEET_API_ADDR/v1/users" -d "{\"email\":\"chaos-$phase-$$@crm.example.test\"}" | json '["id"]')
  ACT=$user
  local started=$(date +%s.%N)
  account=$(api -X POST "http://$MAILFLEET_API_ADDR/v1/accounts" -d "{
    \"provider\":\"imap\",\"kind\":\"personal\",\"owner_user_id\":$user,\"email\":\"$ADDR\",\"password\":\"$PASS\",
    \"imap\":{\"host\":\"127.0.0.1\",\"port\":993,\"encryption\":\"ssl\"},
    \"smtp\":{\"host\":\"127.0.0.1\",\"port\":587,\"encryption\":\"starttls\"},
    \"sync_from\":\"6_months\",\"active_folders\":[\"INBOX\",\"Sent\",\"Archive\"]}" | json '["id"]')
  if [[ $phase == chaos ]]; then
    (
      # Kills at random moments spread over what the clean sync took.
      span=$(cat "$WORK/clean.secs")
      for i in $(seq 1 "$KILLS"); do
        sleep "$(python3 -c "import random; print(round(random.uniform(0.5, 1.5) * $span / $KILLS, 2))")"
        w=$((RANDOM % 2))
        kill -9 "${WORKER[$w]}" 2>/dev/null || true
        echo "kill worker $w" >>"$WORK/events"
        start_worker "$w"
        echo "${WORKER[0]} ${WORKER[1]}" >"$WORK/workers"
        if (( i == KILLS / 2 )); then
          echo "restart rabbitmq" >>"$WORK/events"
          rabbitmqctl -q stop_app >/dev/null && rabbitmqctl -q start_app >/dev/null
        fi
      done
    ) &
    # The chaos is over in seconds; then the sync has to finish by itself.
    wait $!
  fi
  local deadline=$(( $(date +%s) + 600 )) state done_count
  while :; do
    state=$(api "http://$MAILFLEET_API_ADDR/v1/accounts/$account" 2>/dev/null || echo '{}')
    if python3 -c 'import json,sys; a=json.loads(sys.argv[1]); sys.exit(0 if a.get("sync_status")=="idle" and a.get("last_synced_at") else 1)' "$state"; then
      done_count=$(echo "$state" | json '["message_count"]')
      if [[ $phase == clean || $done_count == "$(cat "$WORK/expected.count")" ]]; then break; fi
    fi
    if (( $(date +%s) > deadline )); then echo "chaos: the sync did not finish in 600 s" >&2; break; fi
    sleep 0.2
  done
  local ended=$(date +%s.%N)
  python3 -c "print(f'{$ended-$started:.2f}')" >"$WORK/$phase.secs"
  psql_q "SELECT f.name || ' ' || coalesce(m.message_id, encode(m.content_hash, 'hex')) FROM messages m JOIN message_folders mf ON mf.message_id = m.id JOIN folders f ON f.id = mf.folder_id WHERE m.account_id = $account ORDER BY 1" >"$WORK/$phase.ids"
  psql_q "SELECT count(*) FROM sync_runs WHERE outcome IS DISTINCT FROM 'ok' AND outcome IS DISTINCT FROM 'partial'" >"$WORK/$phase.interrupted"
  rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$MAILFLEET_QUEUE_PREFIX.dead" '$1 == q {print $2}' >"$WORK/$phase.dead"
  while read -r p; do kill -TERM "$p" 2>/dev/null || true; done <"$WORK/pids"
  sleep 1
  : >"$WORK/pids"
  for q in sync refresh_folders send test_connection dead; do rabbitmqctl -q delete_queue "$MAILFLEET_QUEUE_PREFIX.$q" >/dev/null 2>&1 || true; done
  rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$MAILFLEET_QUEUE_PREFIX.dlx\">>), false, <<\"chaos\">>)." >/dev/null 2>&1 || true
}

echo "== clean run ($N messages)"
run clean
sort -u "$WORK/clean.ids" | wc -l >"$WORK/expected.count"
echo "== chaos run ($KILLS worker kills, one RabbitMQ restart)"
run chaos

python3 - "$WORK" <<'PY'
import sys, collections, pathlib
w = pathlib.Path(sys.argv[1])
clean = w.joinpath("clean.ids").read_text().split("\n")
chaos = w.joinpath("chaos.ids").read_text().split("\n")
clean = [l for l in clean if l]; chaos = [l for l in chaos if l]
expected = set(clean)
counts = collections.Counter(chaos)
lost = len(expected - set(chaos))
duplicated = sum(c - 1 for c in counts.values() if c > 1)
dead = int((w / "chaos.dead").read_text().strip() or 0)
recovered = int((w / "chaos.interrupted").read_text().strip() or 0)
t_clean = float((w / "clean.secs").read_text()); t_chaos = float((w / "chaos.secs").read_text())
events = (w / "events").read_text().split("\n") if (w / "events").exists() else []
print(f"messages       {len(expected)}")
print(f"events         {sum(1 for e in events if e.startswith('kill'))} worker kills, {sum(1 for e in events if e.startswith('restart'))} RabbitMQ restart")
print(f"lost           {lost}")
print(f"duplicated     {duplicated}")
print(f"dead-lettered  {dead}")
print(f"recovered      {recovered} interrupted sync runs picked up by another attempt")
print(f"wall time      clean {t_clean:.1f} s, chaos {t_chaos:.1f} s, ratio {t_chaos / t_clean:.2f} (target <= 2)")
sys.exit(0 if lost == 0 and duplicated == 0 and dead == 0 else 1)
PY
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
scripts/mail-user.sh del "$ADDR" >/dev/null || true
