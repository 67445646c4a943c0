#!/usr/bin/env bash
# Stop the Dovecot, Postfix, Cyrus and Courier instances started by scripts/services-up.sh.
# PostgreSQL and RabbitMQ are left alone. Idempotent; data in the run dir is kept.
set -euo pipefail
RUN=${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}
RUN=${RUN%/}
PF_DIR=$RUN/postfix/etc
[[ $EUID -eq 0 ]] || { echo "services-down: must run as root" >&2; exit 1; }

alive() { # running, not a zombie
  kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}
pid_of() { # pid_of PIDFILE COMM -> the pid in PIDFILE if that process runs as COMM
  local pid
  pid=$(head -c 32 "$1" 2>/dev/null | tr -dc 0-9) || return 1
  [[ -n $pid ]] && alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] && echo "$pid"
}
stop() { # stop NAME PID...: SIGTERM, wait up to 15 s
  local name=$1 p i; shift
  kill -TERM "$@" 2>/dev/null || true
  for p in "$@"; do
    for ((i = 0; i < 150; i++)); do alive "$p" || break; sleep 0.1; done
    alive "$p" && { echo "services-down: $name (pid $p) did not stop" >&2; exit 1; }
  done
  return 0
}

if [[ -f $PF_DIR/main.cf ]] && postfix -c "$PF_DIR" status >/dev/null 2>&1; then
  postfix -c "$PF_DIR" stop </dev/null >>"$RUN/postfix/postfix-ctl.log" 2>&1
  rm -f "$RUN/postfix/.running-config.sha256"
  echo "postfix    stopped"
else
  echo "postfix    not running"
fi

if pid=$(pid_of "$RUN/dovecot/run/master.pid" dovecot); then
  stop dovecot "$pid"
  rm -f "$RUN/dovecot/.running-config.sha256"
  echo "dovecot    stopped"
else
  echo "dovecot    not running"
fi

if pid=$(pid_of "$RUN/cyrus/master.pid" master); then
  stop cyrus "$pid"
  rm -f "$RUN/cyrus/.running-config.sha256"
  echo "cyrus      stopped"
else
  echo "cyrus      not running"
fi

pids=()
for f in authdaemond.pid:authdaemond imapd.pid:couriertcpd imapd-ssl.pid:couriertcpd; do
  if pid=$(pid_of "$RUN/courier/${f%%:*}" "${f#*:}"); then pids+=("$pid"); fi
done
if (( ${#pids[@]} )); then
  stop courier "${pids[@]}"
  rm -f "$RUN/courier/.running-config.sha256"
  echo "courier    stopped"
else
  echo "courier    not running"
fi
