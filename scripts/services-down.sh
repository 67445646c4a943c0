#!/usr/bin/env bash
# Stop the Dovecot and Postfix instances started by scripts/services-up.sh.
# PostgreSQL and RabbitMQ are left alone. Idempotent; data in the run dir is kept.
set -euo pipefail
RUN=${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}
RUN=${RUN%/}
PF_DIR=$RUN/postfix/etc
[[ $EUID -eq 0 ]] || { echo "services-down: must run as root" >&2; exit 1; }

if [[ -f $PF_DIR/main.cf ]] && postfix -c "$PF_DIR" status >/dev/null 2>&1; then
  postfix -c "$PF_DIR" stop </dev/null >>"$RUN/postfix/postfix-ctl.log" 2>&1
  rm -f "$RUN/postfix/.running-config.sha256"
  echo "postfix    stopped"
else
  echo "postfix    not running"
fi

pid=$(cat "$RUN/dovecot/run/master.pid" 2>/dev/null || true)
if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dovecot ]]; then
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { echo "services-down: dovecot (pid $pid) did not stop" >&2; exit 1; }
  rm -f "$RUN/dovecot/.running-config.sha256"
  echo "dovecot    stopped"
else
  echo "dovecot    not running"
fi
