#!/usr/bin/env bash
# Initial sync of one realistic mailbox: mailfleet (one worker process, release build) against
# mbsync (isync) fetching the same folders over the same TLS port into a local Maildir.
# Prints both wall times, the ratio, messages per second and the worker's peak RSS.
#   bench/imap-vs-mbsync.sh [messages]        (default 10000)
# It waits for the machine to be idle first and reports the load it ran under.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
RUN=${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}
WORK=$(mktemp -d /tmp/mailfleet-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

scripts/services-up.sh >/dev/null
command -v mbsync >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq isync >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
echo "== building (release)"
cargo build --release -q -p mailfleet
BIN=target/release/mailfleet
[ -n "${CARGO_TARGET_DIR:-}" ] && BIN="$CARGO_TARGET_DIR/release/mailfleet"

ADDR="bench-$(date +%s)@example.test"
PASS="bench-pass-$RANDOM"
echo "== seeding $N messages into $ADDR"
"$BIN" dev-seed --address "$ADDR" --password "$PASS" --messages "$N" --span-days 150

export DATABASE_URL="postgres://postgres@127.0.0.1:5432/mailfleet_bench"
export MAILFLEET_QUEUE_PREFIX="mailfleet-bench"
export MAILFLEET_SECRET_KEY=$(head -c 32 /dev/urandom | base64)
export MAILFLEET_API_TOKEN="bench-token"
export MAILFLEET_API_ADDR="127.0.0.1:18089"
export MAILFLEET_EXTRA_CA_FILE="$RUN/tls/ca.pem"
export RUST_LOG=warn MAILFLEET_HEALTH_ADDR=127.0.0.1:0
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS mailfleet_bench WITH (FORCE)" >/dev/null
"$BIN" migrate

wait_idle() {
  for _ in $(seq 1 60); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$load" 'BEGIN { exit !(l < 0.5) }' && return 0
    sleep 2
  done
  echo "(machine did not become idle; running anyway)"
}

# Requests after the user exists are made as that user (the acting user header).
api() {
  local acting=()
  [[ -n ${ACT:-} ]] && acting=(-H "X-Mailfleet-User: $ACT")
  curl -sf -H "Authorization: Bearer $MAILFLEET_API_TOKEN" "${acting[@]}" -H 'Content-Type: application/json' "$@"
}

"$BIN" coordinator --sync-interval-secs 86400 >"$WORK/coordinator.log" 2>&1 &
for _ in $(seq 1 50); do api "http://$MAILFLEET_API_ADDR/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
USER_ID=$(api -X POST "http://$MAILFLEET_API_ADDR/v1/users" -d "{\"email\":\"owner-$$@crm.example.test\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
ACT=$USER_ID
wait_idle
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== mailfleet: one worker, initial sync (load before: $LOAD_BEFORE)"
# Busy CPU of the whole machine (worker, Dovecot, Postgres), in core-seconds.
busy() { awk '/^cpu / {print $2+$3+$4+$7+$8}' /proc/stat; }
# CPU ticks (user + system) of the processes with these command names (a regex).
ticks() {
  local t=0 p f
  for p in $(pgrep -x "$1"); do
    read -r -a f <"/proc/$p/stat" 2>/dev/null || continue
    t=$((t + f[13] + f[14]))
  done
  echo "$t"
}
# Done when the sync has recorded its end. Asked of Postgres through one psql session kept
# open: a primary-key lookup every 50 ms, so the poll costs next to nothing of the CPU being
# measured (the API's account view counts the messages of every folder on each call).
coproc POLL { psql -h 127.0.0.1 -U postgres -qAt mailfleet_bench; }
MF_BUSY0=$(busy) PG0=$(ticks postgres) IMAP0=$(ticks 'imap|imap-login')
START=$(date +%s.%N)
# PERF=/path/perf.data records a CPU profile of the worker (perf report -i /path/perf.data).
PROFILE_CMD=()
if [[ -n ${PERF:-} ]]; then PROFILE_CMD=(perf record -F 499 -g -o "$PERF" --); fi
MAILFLEET_WORKER_SLOTS=1 /usr/bin/time -v "${PROFILE_CMD[@]}" "$BIN" worker >"$WORK/worker.log" 2>"$WORK/worker.time" &
TIME_PID=$!
# Connecting with chosen folders runs a connection test through the worker (the server lists
# the folders first), so the account is created once the worker runs, inside the timing.
ACCOUNT=$(api -X POST "http://$MAILFLEET_API_ADDR/v1/accounts" -d "{
  \"provider\":\"imap\",\"kind\":\"personal\",\"owner_user_id\":$USER_ID,\"email\":\"$ADDR\",\"password\":\"$PASS\",
  \"imap\":{\"host\":\"127.0.0.1\",\"port\":993,\"encryption\":\"ssl\"},
  \"smtp\":{\"host\":\"127.0.0.1\",\"port\":587,\"encryption\":\"starttls\"},
  \"sync_from\":\"6_months\",\"create_contacts\":true,\"active_folders\":[\"INBOX\",\"Sent\",\"Archive\"]}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

while :; do
  echo "SELECT last_synced_at IS NOT NULL AND sync_queued_at IS NULL FROM accounts WHERE id = $ACCOUNT;" >&"${POLL[1]}"
  read -r done <&"${POLL[0]}"
  [[ $done == t ]] && break
  sleep 0.05
done
END=$(date +%s.%N)
MF_BUSY=$(( $(busy) - MF_BUSY0 )) PG=$(( $(ticks postgres) - PG0 )) IMAP=$(( $(ticks 'imap|imap-login') - IMAP0 ))
exec {POLL[1]}>&-
state=$(api "http://$MAILFLEET_API_ADDR/v1/accounts/$ACCOUNT")
MF_COUNT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["message_count"])' "$state")
# The worker is /usr/bin/time's child, or perf's under PERF: stop it, not time (or perf).
for child in $(pgrep -P "$TIME_PID"); do pkill -TERM -P "$child" || true; done
[[ -n ${PERF:-} ]] || pkill -TERM -P "$TIME_PID" || true
wait $TIME_PID || true
MF_RSS_KB=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$WORK/worker.time")
MF_SECS=$(python3 -c "print(f'{$END-$START:.2f}')")
MF_USER=$(awk -F: '/User time/ {gsub(/ /,"",$2); print $2}' "$WORK/worker.time")
MF_SYS=$(awk -F: '/System time/ {gsub(/ /,"",$2); print $2}' "$WORK/worker.time")
echo "   $MF_COUNT messages in $MF_SECS s, worker peak RSS $((MF_RSS_KB / 1024)) MB"
MF_BUSY_S=$(python3 -c "print(round($MF_BUSY / $(getconf CLK_TCK), 1))")
MF_AVAIL_S=$(python3 -c "print(round($(nproc) * ($END - $START), 1))")
HZ=$(getconf CLK_TCK)
echo "   CPU: worker $MF_USER s user + $MF_SYS s sys; Postgres $(python3 -c "print(round($PG / $HZ, 1))") s; Dovecot (imap, imap-login: TLS) $(python3 -c "print(round($IMAP / $HZ, 1))") s; machine busy $MF_BUSY_S core-s of $MF_AVAIL_S"

wait_idle
echo "== mbsync: same folders, same port (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
mkdir -p "$WORK/maildir"
cat >"$WORK/mbsyncrc" <<CONF
IMAPAccount bench
# mbsync 1.4 matches the certificate against DNS names only.
Host localhost
Port 993
User $ADDR
Pass $PASS
SSLType IMAPS
CertificateFile $RUN/tls/ca.pem

IMAPStore remote
Account bench

MaildirStore local
Path $WORK/maildir/
Inbox $WORK/maildir/INBOX
SubFolders Verbatim

Channel bench
Far :remote:
Near :local:
Patterns INBOX Sent Archive
Create Near
Sync Pull
SyncState *
CONF
START=$(date +%s.%N)
mbsync -q -c "$WORK/mbsyncrc" -a
END=$(date +%s.%N)
MB_SECS=$(python3 -c "print(f'{$END-$START:.2f}')")
MB_COUNT=$(find "$WORK/maildir" -type f -path '*/cur/*' -o -type f -path '*/new/*' | wc -l)

wait_idle
echo "== floor: one TLS connection reading every body and keeping nothing (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
read -r FLOOR_SECS FLOOR_BYTES < <(python3 bench/read-floor.py "$ADDR" "$PASS" "$RUN/tls/ca.pem" INBOX Sent Archive)

python3 - "$MF_SECS" "$MB_SECS" "$MF_COUNT" "$MB_COUNT" "$MF_RSS_KB" "$LOAD_BEFORE" "$FLOOR_SECS" "$FLOOR_BYTES" <<'PY'
import sys
mf, mb, mfn, mbn, rss, load = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
floor, floor_bytes = float(sys.argv[7]), int(sys.argv[8])
print()
print(f"{'':12}{'messages':>10}{'seconds':>10}{'msg/s':>10}")
print(f"{'mailfleet':12}{mfn:>10}{mf:>10.2f}{mfn/mf:>10.0f}   worker peak RSS {rss/1024:.0f} MB")
print(f"{'mbsync':12}{mbn:>10}{mb:>10.2f}{mbn/mb:>10.0f}")
print(f"{'floor':12}{mbn:>10}{floor:>10.2f}{mbn/floor:>10.0f}   {floor_bytes/1e6:.0f} MB read and dropped")
print(f"ratio mailfleet/mbsync: {mf/mb:.2f}  (target <= 0.33); floor/mbsync: {floor/mb:.2f}; mailfleet/floor: {mf/floor:.2f}")
print(f"load average before the runs: {load}")
PY
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS mailfleet_bench WITH (FORCE)" >/dev/null
scripts/mail-user.sh del "$ADDR" >/dev/null || true
