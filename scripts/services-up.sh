#!/usr/bin/env bash
# Bring up the local mail stack for mailfleet development and tests (run as root).
# Idempotent: a second run with everything up changes nothing and takes well under 2 s.
#
#   Dovecot (own instance, config <run>/dovecot/dovecot.conf)  127.0.0.1: 143 IMAP (STARTTLS),
#       993 IMAPS, 24 LMTP; SASL socket <run>/dovecot/run/auth-postfix for Postfix
#   Postfix (own instance, `postfix -c <run>/postfix/etc`)     127.0.0.1: 25 SMTP, 587
#       submission (STARTTLS + AUTH), 465 submissions (TLS wrapper + AUTH)
#   PostgreSQL 127.0.0.1:5432 and RabbitMQ 127.0.0.1:5672: only started/installed when
#       not reachable; never touched when they already run.
#
# <run> = ${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}
#   tls/ca.pem (trust this), tls/ca.key, tls/server.pem, tls/server.key (leaf: localhost, 127.0.0.1)
#   users/<address>   one passwd-file per user, one line "<address>:{PLAIN}<password>::::::"
#                     (lower-case address; mode 0644; see scripts/mail-user.sh)
#   mail/<domain>/<local>/Maildir   mail storage, owned by user/group vmail
#
# MAILDIR LAYOUT: Maildir with LAYOUT=fs, hierarchy separator "/" (NOT Maildir++):
#   INBOX   = <run>/mail/<domain>/<local>/Maildir/{cur,new,tmp}
#   Sent    = <run>/mail/<domain>/<local>/Maildir/Sent/{cur,new,tmp}
#   Archive = .../Maildir/Archive/   Trash = .../Maildir/Trash/
#   Junk    = .../Maildir/Junk/      Drafts = .../Maildir/Drafts/
#   Foo/Bar = .../Maildir/Foo/Bar/   (sub-folders are nested directories)
# Auto-created folders (Sent, Drafts, Archive, Junk, Trash) show in LIST at once but get
# their directory only when first opened: a seeder must mkdir <folder>/{cur,new,tmp}
# itself (owner vmail:vmail, mode 0700). Message files: owner vmail, written in tmp/
# then renamed into cur/ ("<unique>,S=<size>,W=<crlf size>:2,<flags>") or new/; mtime =
# INTERNALDATE. Dovecot notices them at the next SELECT/STATUS/NOOP; no doveadm needed.
# To rebuild indexes anyway: doveadm -c <run>/dovecot/dovecot.conf force-resync -u <addr> '*'
#
# Logs: <run>/dovecot/dovecot.log, <run>/postfix/postfix.log, <run>/*.log
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TPL_DIR=$(cd "$SCRIPT_DIR/../deploy/local" && pwd)
RUN=${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}

DOVECOT_CONF=$RUN/dovecot/dovecot.conf
PF_DIR=$RUN/postfix/etc
MAIL_DOMAIN=example.test

say() { printf 'services-up: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root"
[[ $RUN == /* ]] || die "MAILFLEET_RUN_DIR must be an absolute path (got '$RUN')"
[[ $RUN =~ ^[A-Za-z0-9/._-]+$ ]] || die "MAILFLEET_RUN_DIR may only contain [A-Za-z0-9/._-]"
# unix socket paths are limited to 107 bytes (e.g. <run>/dovecot/run/login/imap-urlauth-worker)
(( ${#RUN} <= 60 )) || die "MAILFLEET_RUN_DIR is too long for Dovecot's unix sockets (max 60 chars)"
RUN=${RUN%/}

# ---------------------------------------------------------------- helpers
port_open() { # port_open PORT -> 0 if 127.0.0.1:PORT accepts TCP
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}
wait_ports() { # wait_ports TIMEOUT PORT... -> 0 when all accept
  local deadline=$((SECONDS + $1)) p; shift
  for p in "$@"; do
    until port_open "$p"; do
      (( SECONDS < deadline )) || return 1
      sleep 0.2
    done
  done
}
pkg_installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}
APT_UPDATED=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if (( ! APT_UPDATED )); then
    say "apt-get update"
    apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >/dev/null
}
# install_file SRC DST MODE -> replaces DST only if content differs; returns 0 if changed
install_file() {
  if [[ -f $2 ]] && cmp -s "$1" "$2"; then
    rm -f "$1"; return 1
  fi
  chmod "$3" "$1"; mv -f "$1" "$2"; return 0
}
render() { # render TEMPLATE -> stdout
  sed -e "s|@RUN@|$RUN|g" -e "s|@VMAIL_UID@|$VMAIL_UID|g" "$TPL_DIR/$1"
}
pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# ---------------------------------------------------------------- 1. packages
missing=()
for p in dovecot-imapd dovecot-lmtpd postfix openssl ca-certificates; do
  pkg_installed "$p" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  echo "postfix postfix/mailname string mail.$MAIL_DOMAIN" | debconf-set-selections
  apt_install "${missing[@]}"
fi

# ---------------------------------------------------------------- 2. run dir, vmail
if ! getent passwd vmail >/dev/null; then
  if ! getent group vmail >/dev/null; then
    if getent group 5000 >/dev/null; then groupadd --system vmail; else groupadd -g 5000 vmail; fi
  fi
  if getent passwd 5000 >/dev/null; then
    useradd --system -g vmail -d /nonexistent -M -s /usr/sbin/nologin vmail
  else
    useradd -u 5000 -g vmail -d /nonexistent -M -s /usr/sbin/nologin vmail
  fi
  say "created user vmail ($(id -u vmail):$(id -g vmail))"
fi
VMAIL_UID=$(id -u vmail)

install -d -o root -g root -m 0755 "$RUN" "$RUN/dovecot" "$RUN/dovecot/state" \
  "$RUN/users" "$RUN/postfix" "$RUN/postfix/etc" "$RUN/postfix/data" "$RUN/postfix/spool"
install -d -o root -g root -m 0755 "$RUN/tls"   # certs 0644, keys 0600
[[ -d $RUN/mail ]] || install -d -o vmail -g vmail -m 0770 "$RUN/mail"
chown postfix:postfix "$RUN/postfix/data"

# ---------------------------------------------------------------- 3. TLS (first run only)
TLS=$RUN/tls
if ! [[ -s $TLS/ca.pem && -s $TLS/ca.key && -s $TLS/server.pem && -s $TLS/server.key ]]; then
  say "creating test CA and leaf certificate in $TLS"
  tmp=$(mktemp -d "$TLS/.new.XXXXXX")
  (
    cd "$tmp"
    umask 077
    openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout ca.key -out ca.csr \
      -subj "/O=mailfleet/CN=mailfleet dev test CA" -config /dev/null 2>/dev/null
    openssl x509 -req -in ca.csr -signkey ca.key -days 3650 -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" \
      -extfile "$TPL_DIR/tls-ca.ext" -extensions v3_ca -out ca.pem 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr \
      -subj "/O=mailfleet/CN=localhost" -config /dev/null 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key \
      -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
      -extfile "$TPL_DIR/tls-server.ext" -extensions v3_server -out server.pem 2>/dev/null
    openssl verify -CAfile ca.pem server.pem >/dev/null
    chmod 0644 ca.pem server.pem
    chmod 0600 ca.key server.key
    mv -f ca.key ca.pem server.key server.pem "$TLS/"
  )
  rm -rf "$tmp"
  # daemons already running hold the old certificate: make them restart below
  rm -f "$RUN/dovecot/.running-config.sha256" "$RUN/postfix/.running-config.sha256"
fi

# ---------------------------------------------------------------- 4. Dovecot
render dovecot.conf.in >"$DOVECOT_CONF.tmp"
install_file "$DOVECOT_CONF.tmp" "$DOVECOT_CONF" 0644 || true
DOVECOT_SHA=$(sha256sum "$DOVECOT_CONF" | cut -d' ' -f1)
DOVECOT_PIDFILE=$RUN/dovecot/run/master.pid
DOVECOT_STAMP=$RUN/dovecot/.running-config.sha256

dovecot_pid() {
  local pid
  pid=$(cat "$DOVECOT_PIDFILE" 2>/dev/null) || return 1
  pid_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dovecot ]] && echo "$pid"
}
dovecot_stop() {
  local pid i
  pid=$(dovecot_pid) || return 0
  say "stopping dovecot (pid $pid)"
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do pid_alive "$pid" || return 0; sleep 0.1; done
  die "dovecot (pid $pid) did not stop"
}

dovecot_action=running
if pid=$(dovecot_pid); then
  if [[ $(cat "$DOVECOT_STAMP" 2>/dev/null) != "$DOVECOT_SHA" ]]; then
    doveconf -c "$DOVECOT_CONF" -n >/dev/null || die "dovecot config invalid: $DOVECOT_CONF"
    dovecot_stop
    dovecot_action=restarted
  fi
else
  dovecot_action=started
fi
if [[ $dovecot_action != running ]]; then
  doveconf -c "$DOVECOT_CONF" -n >/dev/null || die "dovecot config invalid: $DOVECOT_CONF"
  # Dovecot's master keeps the caller's stderr: never let it inherit ours.
  dovecot -c "$DOVECOT_CONF" </dev/null >>"$RUN/dovecot/dovecot-stderr.log" 2>&1 \
    || die "dovecot failed to start; see $RUN/dovecot/dovecot.log"
  echo "$DOVECOT_SHA" >"$DOVECOT_STAMP"
fi

# ---------------------------------------------------------------- 5. Postfix
render postfix-main.cf.in >"$PF_DIR/main.cf.tmp"
render postfix-master.cf.in >"$PF_DIR/master.cf.tmp"
install_file "$PF_DIR/main.cf.tmp" "$PF_DIR/main.cf" 0644 || true
install_file "$PF_DIR/master.cf.tmp" "$PF_DIR/master.cf" 0644 || true
POSTFIX_SHA=$(cat "$PF_DIR/main.cf" "$PF_DIR/master.cf" | sha256sum | cut -d' ' -f1)
POSTFIX_STAMP=$RUN/postfix/.running-config.sha256
POSTFIX_LOG=$RUN/postfix/postfix-ctl.log

postfix_running() { postfix -c "$PF_DIR" status >/dev/null 2>&1; }
postfix_action=running
if postfix_running; then
  if [[ $(cat "$POSTFIX_STAMP" 2>/dev/null) != "$POSTFIX_SHA" ]]; then
    say "postfix config changed: restarting"
    postfix -c "$PF_DIR" stop </dev/null >>"$POSTFIX_LOG" 2>&1 || true
    postfix_action=restarted
  fi
else
  postfix_action=started
fi
if [[ $postfix_action != running ]]; then
  # `postfix check` also creates the missing queue directories of this instance
  postfix -c "$PF_DIR" check </dev/null >>"$POSTFIX_LOG" 2>&1 \
    || die "postfix check failed; see $POSTFIX_LOG and $RUN/postfix/postfix.log"
  postfix -c "$PF_DIR" start </dev/null >>"$POSTFIX_LOG" 2>&1 \
    || die "postfix failed to start; see $POSTFIX_LOG and $RUN/postfix/postfix.log"
  echo "$POSTFIX_SHA" >"$POSTFIX_STAMP"
fi

# ---------------------------------------------------------------- 6. PostgreSQL, RabbitMQ
pg_action=running
if ! port_open 5432; then
  if ! pkg_installed postgresql || ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql
    pg_action=installed+started
  else
    pg_action=started
  fi
  PG_VER=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1 || true)
  [[ -n $PG_VER ]] || die "postgresql is installed but /usr/lib/postgresql/<version> is missing"
  PG_ETC=/etc/postgresql/$PG_VER/main
  [[ -d $PG_ETC ]] || pg_createcluster "$PG_VER" main >/dev/null
  mkdir -p "$PG_ETC/conf.d"
  grep -qsE "^listen_addresses" "$PG_ETC/conf.d/"*.conf \
    || echo "listen_addresses = '127.0.0.1'" >"$PG_ETC/conf.d/90-mailfleet.conf"
  if ! grep -qE '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$PG_ETC/pg_hba.conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$PG_ETC/pg_hba.conf"
  fi
  if ! grep -qE '^local[[:space:]]+all[[:space:]]+all[[:space:]]+trust' "$PG_ETC/pg_hba.conf"; then
    sed -i '1i local all all trust' "$PG_ETC/pg_hba.conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main start </dev/null >>"$RUN/postgresql.log" 2>&1 \
    || die "postgresql failed to start; see $RUN/postgresql.log"
  wait_ports 30 5432 || die "postgresql did not open 127.0.0.1:5432; see $RUN/postgresql.log"
  for ((i = 0; i < 60; i++)); do pg_isready -q -h 127.0.0.1 -p 5432 -t 1 && break; sleep 0.5; done
  psql -h 127.0.0.1 -U postgres -w -Atqc 'select 1' >/dev/null \
    || die "postgresql on 127.0.0.1:5432 does not accept user postgres without password"
fi

rabbit_action=running
if ! port_open 5672; then
  if ! pkg_installed rabbitmq-server; then
    apt_install rabbitmq-server
    rabbit_action=installed+started
  else
    rabbit_action=started
  fi
  mkdir -p /etc/rabbitmq
  grep -qs '^NODENAME=' /etc/rabbitmq/rabbitmq-env.conf || cat >>/etc/rabbitmq/rabbitmq-env.conf <<'EOF'
NODENAME=rabbit@localhost
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
  grep -qs '^listeners.tcp' /etc/rabbitmq/rabbitmq.conf \
    || echo 'listeners.tcp.local = 127.0.0.1:5672' >>/etc/rabbitmq/rabbitmq.conf
  ( export ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_NODENAME=rabbit@localhost
    rabbitmq-server -detached </dev/null >>"$RUN/rabbitmq.log" 2>&1 ) \
    || die "rabbitmq-server failed to start; see $RUN/rabbitmq.log"
  wait_ports 60 5672 || die "rabbitmq did not open 127.0.0.1:5672 within 60 s; see $RUN/rabbitmq.log"
fi

# ---------------------------------------------------------------- 7. wait + summary
wait_ports 30 143 993 24 || die "dovecot ports not up after 30 s; see $RUN/dovecot/dovecot.log"
wait_ports 30 25 587 465 || die "postfix ports not up after 30 s; see $RUN/postfix/postfix.log"

printf '%-10s %-19s 127.0.0.1:143 imap+starttls, :993 imaps, :24 lmtp (config %s)\n' \
  dovecot "$dovecot_action" "$DOVECOT_CONF"
printf '%-10s %-19s 127.0.0.1:25 smtp, :587 submission, :465 submissions (postfix -c %s)\n' \
  postfix "$postfix_action" "$PF_DIR"
printf '%-10s %-19s 127.0.0.1:5432 (user postgres, trust)\n' postgresql "$pg_action"
printf '%-10s %-19s 127.0.0.1:5672 (guest/guest)\n' rabbitmq "$rabbit_action"
printf '%-10s %-19s CA %s, users %s, mail %s\n' paths ok "$TLS/ca.pem" "$RUN/users" "$RUN/mail"
