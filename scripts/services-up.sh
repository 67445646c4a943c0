#!/usr/bin/env bash
# Bring up the local mail stack for mailfleet development and tests (run as root).
# Idempotent: a second run with everything up changes nothing and takes well under 2 s.
#
#   Dovecot (own instance, config <run>/dovecot/dovecot.conf)  127.0.0.1: 143 IMAP (STARTTLS),
#       993 IMAPS, 24 LMTP; SASL socket <run>/dovecot/run/auth-postfix for Postfix
#   Postfix (own instance, `postfix -c <run>/postfix/etc`)     127.0.0.1: 25 SMTP, 587
#       submission (STARTTLS + AUTH), 465 submissions (TLS wrapper + AUTH)
#   Cyrus IMAP 3.6 (own instance, config <run>/cyrus/imapd.conf + cyrus.conf)  127.0.0.1:
#       1143 IMAP (STARTTLS), 1993 IMAPS. CONDSTORE, QRESYNC, OBJECTID, MOVE, SPECIAL-USE.
#   Courier-IMAP 5.0 (own instance, settings <run>/courier/imapd.env)  127.0.0.1: 2143 IMAP
#       (STARTTLS), 2993 IMAPS. No CONDSTORE/QRESYNC, no MOVE, no SPECIAL-USE; "INBOX." / ".".
#   PostgreSQL 127.0.0.1:5432 and RabbitMQ 127.0.0.1:5672: only started/installed when
#       not reachable; never touched when they already run.
#
# The packages cyrus-imapd and courier-imap both Conflict with dovecot-imapd (virtual
# package imap-server), so they are not installed in dpkg: their dependencies are
# (cyrus-common, courier-base, ...), and the two packages themselves are fetched with
# `apt-get download` and unpacked into <run>/pkg/<name>_<version>/ (the version that the
# installed cyrus-common / courier-base belongs to).
#
# <run> = ${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}
#   tls/ca.pem (trust this), tls/ca.key, tls/server.pem, tls/server.key (leaf: localhost, 127.0.0.1)
#   users/<address>   one passwd-file per user, one line "<address>:{PLAIN}<password>::::::"
#                     (lower-case address; mode 0644; see scripts/mail-user.sh)
#   mail/<domain>/<local>/Maildir   mail storage, owned by user/group vmail
#   cyrus/   Cyrus config, state (config/, spool/), users in cyrus/auth/users.sqlite
#   courier/ Courier config (etc/ = its /etc/courier), users in courier/etc/userdb/<address>,
#            Maildir++ under courier/mail/<domain>/<local>/Maildir (owner vmail)
#   Users of all three servers: scripts/mail-user.sh add|del
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
# Logs: <run>/dovecot/dovecot.log, <run>/postfix/postfix.log, <run>/courier/*.log, <run>/*.log
# (Cyrus logs only to syslog, and there is none: <run>/cyrus/master.log has its stderr only.)
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
trap 'say "ERROR: line $LINENO: \"$BASH_COMMAND\" failed"' ERR
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
  sed -e "s|@RUN@|$RUN|g" -e "s|@VMAIL_UID@|$VMAIL_UID|g" -e "s|@CYRUS_BIN@|${CYRUS_BIN:-}|g" \
    -e "s|@COURIER_PKG@|${COURIER_PKG:-}|g" "$TPL_DIR/$1"
}
pid_alive() { # running, not a zombie (PID 1 here reaps orphans only now and then)
  [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null \
    && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}
# pid_of FILE COMM -> prints the pid in FILE if that process runs as COMM
pid_of() {
  local pid
  pid=$(head -c 32 "$1" 2>/dev/null | tr -dc 0-9) || return 1
  pid_alive "$pid" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] && echo "$pid"
}
stop_pid() { # stop_pid NAME PID [TIMEOUT_TENTHS]: SIGTERM, wait, fail loudly
  local i
  pid_alive "$2" || return 0
  kill -TERM "$2" 2>/dev/null || true
  for ((i = 0; i < ${3:-100}; i++)); do pid_alive "$2" || return 0; sleep 0.1; done
  die "$1 (pid $2) did not stop"
}
# install_copy SRC DST OWNER:GROUP MODE -> copies only if the content differs
install_copy() {
  if ! [[ -f $2 ]] || ! cmp -s "$1" "$2"; then
    install -o "${3%:*}" -g "${3#*:}" -m "$4" "$1" "$2.tmp" && mv -f "$2.tmp" "$2"
  fi
  chown "$3" "$2"; chmod "$4" "$2"
}
# unpack_deb NAME BASE: the package NAME is never installed in dpkg (cyrus-imapd and
# courier-imap Conflict with dovecot-imapd); the candidate version is fetched with
# `apt-get download` and unpacked into $PKG_DIR/NAME_<version>, once, after bringing the
# installed package BASE to the version NAME depends on exactly. Sets UNPACKED_DIR.
# Optional hook: the function unpack_hook_NAME (dashes as _) runs on the new tree.
unpack_deb() {
  local name=$1 base=$2 link=$PKG_DIR/$1 base_ver want tmp deb ver dir hook
  base_ver=$(dpkg-query -W -f='${Version}' "$base")
  if [[ -f $link/.unpacked && $(cat "$link/.base-version" 2>/dev/null) == "$base_ver" ]]; then
    UNPACKED_DIR=$(readlink -f "$link"); return 0
  fi
  tmp=$(mktemp -d "$PKG_DIR/.dl.XXXXXX")
  if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$name" >/dev/null 2>&1); then
    export DEBIAN_FRONTEND=noninteractive
    (( APT_UPDATED )) || { say "apt-get update"; apt-get update -qq >/dev/null; APT_UPDATED=1; }
    (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$name" >/dev/null) \
      || die "apt-get download $name failed"
  fi
  deb=$(echo "$tmp"/*.deb)
  ver=$(dpkg-deb -f "$deb" Version)
  want=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -n "s/^ *$base (= \(.*\))\$/\1/p")
  if [[ -n $want && $want != "$base_ver" ]]; then
    apt_install "$base=$want"
    base_ver=$want
  fi
  dir=$PKG_DIR/${name}_$ver
  say "unpacking $name $ver into $dir"
  rm -rf "$dir.tmp"
  dpkg-deb -x "$deb" "$dir.tmp"
  hook=unpack_hook_${name//-/_}
  if declare -F "$hook" >/dev/null; then "$hook" "$dir.tmp"; fi
  echo "$base_ver" >"$dir.tmp/.base-version"
  touch "$dir.tmp/.unpacked"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  ln -sfn "${name}_$ver" "$link"
  find "$PKG_DIR" -maxdepth 1 -name "${name}_*" ! -name "${name}_$ver" -exec rm -rf {} +
  rm -rf "$tmp"
  UNPACKED_DIR=$dir
}

# ---------------------------------------------------------------- 1. packages
# Cyrus: cyrus-common (tools, master) + the SASL "sql" auxprop for the SQLite user table;
# libwrap0 is what imapd of cyrus-imapd needs beyond cyrus-common.
# Courier: courier-base (couriertcpd, couriertls, maildirmake), authdaemond + userdb,
# and the libraries imapd/imaplogin of courier-imap link against.
PACKAGES=(dovecot-imapd dovecot-lmtpd postfix openssl ca-certificates
  cyrus-common libsasl2-modules libsasl2-modules-sql libwrap0 sqlite3
  courier-base courier-authlib courier-authdaemon courier-authlib-userdb
  libcourier-unicode4 libgdbm6 libidn12 gamin libgamin0 binutils)
missing=()
declare -A INSTALLED_VER=()
while read -r p st ver; do
  if [[ $st == installed ]]; then INSTALLED_VER[$p]=$ver; fi
done < <(dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\n' "${PACKAGES[@]}" 2>/dev/null || true)
for p in "${PACKAGES[@]}"; do
  [[ -n ${INSTALLED_VER[$p]:-} ]] || missing+=("$p")
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

# ---------------------------------------------------------------- 6. Cyrus IMAP
# Own instance: every program gets -C <run>/cyrus/imapd.conf; master binds 127.0.0.1 only.
PKG_DIR=$RUN/pkg
install -d -o root -g root -m 0755 "$PKG_DIR"
unpack_deb cyrus-imapd cyrus-common
CYRUS_BIN=$UNPACKED_DIR/usr/lib/cyrus/bin
CYRUS=$RUN/cyrus
CYRUS_CONF=$CYRUS/imapd.conf
CYRUS_DB=$CYRUS/auth/users.sqlite
getent passwd cyrus >/dev/null || die "user cyrus missing (made by package cyrus-common)"

install -d -o root -g root -m 0755 "$CYRUS"
cyrus_dirs=("$CYRUS/config" "$CYRUS/spool" "$CYRUS/spool/stage." "$CYRUS/sieve" "$CYRUS/tls" "$CYRUS/auth")
for d in db proc socket log msg user quota lock; do cyrus_dirs+=("$CYRUS/config/$d"); done
for d in user quota lock; do for h in {a..z}; do cyrus_dirs+=("$CYRUS/config/$d/$h"); done; done
if [[ ! -d $CYRUS/config/lock/z ]]; then   # what Debian's cyrus-makedirs makes
  install -d -o cyrus -g mail -m 0750 "${cyrus_dirs[@]}"
fi
install_copy "$TLS/server.pem" "$CYRUS/tls/server.pem" cyrus:mail 0644
install_copy "$TLS/server.key" "$CYRUS/tls/server.key" cyrus:mail 0600
render cyrus-imapd.conf.in >"$CYRUS_CONF.tmp"
install_file "$CYRUS_CONF.tmp" "$CYRUS_CONF" 0644 || true
render cyrus.conf.in >"$CYRUS/cyrus.conf.tmp"
install_file "$CYRUS/cyrus.conf.tmp" "$CYRUS/cyrus.conf" 0644 || true

# Users: SQLite table read by the SASL sql auxprop, which opens it at every login with no
# busy timeout: the live file is never written in place (see cyrus_write in
# scripts/mail-user.sh: copy, change, rename, under flock), journal mode DELETE (WAL's
# checkpoint-on-close locks out concurrent readers). Owner cyrus:mail, mode 0640.
# The admin "cyrus" (mail-user.sh del uses it) is looked up as cyrus@localhost.
cyrus_db_write() {
  (
    flock 9
    cp -p "$CYRUS_DB" "$CYRUS_DB.new"
    sqlite3 -batch "$CYRUS_DB.new" "$@" >/dev/null
    mv -f "$CYRUS_DB.new" "$CYRUS_DB"
  ) 9>"$CYRUS_DB.lock"
}
if [[ ! -s $CYRUS/admin.pass ]]; then
  (umask 077; openssl rand -hex 16 >"$CYRUS/admin.pass")
fi
if [[ ! -s $CYRUS_DB ]]; then
  rm -f "$CYRUS_DB.new"
  sqlite3 -batch "$CYRUS_DB.new" \
    "CREATE TABLE users (address TEXT PRIMARY KEY, password TEXT NOT NULL);"
  chown cyrus:mail "$CYRUS_DB.new"; chmod 0640 "$CYRUS_DB.new"
  mv -f "$CYRUS_DB.new" "$CYRUS_DB"
fi
if [[ $(sqlite3 -batch -readonly "$CYRUS_DB" 'PRAGMA journal_mode') != delete ]]; then
  cyrus_db_write 'PRAGMA journal_mode=DELETE'
  rm -f "$CYRUS_DB-wal" "$CYRUS_DB-shm"
fi
chown cyrus:mail "$CYRUS_DB"; chmod 0640 "$CYRUS_DB"
CYRUS_ADMIN_PW=$(cat "$CYRUS/admin.pass")
if [[ $(sqlite3 -batch -readonly "$CYRUS_DB" \
      "SELECT password FROM users WHERE address = 'cyrus@localhost'") != "$CYRUS_ADMIN_PW" ]]; then
  cyrus_db_write "INSERT OR REPLACE INTO users VALUES ('cyrus@localhost', '$CYRUS_ADMIN_PW');"
fi

CYRUS_SHA=$(cat "$CYRUS_CONF" "$CYRUS/cyrus.conf" "$CYRUS/tls/server.pem" "$CYRUS/tls/server.key" \
  | sha256sum | cut -d' ' -f1)
CYRUS_STAMP=$CYRUS/.running-config.sha256
CYRUS_PIDFILE=$CYRUS/master.pid
cyrus_action=running
if pid=$(pid_of "$CYRUS_PIDFILE" master); then
  if [[ $(cat "$CYRUS_STAMP" 2>/dev/null) != "$CYRUS_SHA" ]]; then
    say "cyrus config changed: restarting"
    stop_pid "cyrus master" "$pid" 150
    cyrus_action=restarted
  fi
else
  cyrus_action=started
fi
if [[ $cyrus_action != running ]]; then
  (cd "$CYRUS" && /usr/lib/cyrus/bin/master -C "$CYRUS_CONF" -M "$CYRUS/cyrus.conf" \
      -p "$CYRUS_PIDFILE" -d </dev/null >>"$CYRUS/master.log" 2>&1) \
    || die "cyrus master failed to start; see $CYRUS/master.log"
  echo "$CYRUS_SHA" >"$CYRUS_STAMP"
fi

# ---------------------------------------------------------------- 7. Courier-IMAP
# Courier's paths are compiled in (/etc/courier/authdaemonrc, userdb.dat, and the socket
# /run/courier/authdaemon/socket that imaplogin connects to), so authdaemond and both
# couriertcpd run in a mount namespace of their own, where <run>/courier/etc is mounted
# on /etc/courier and <run>/courier/authdaemon on /run/courier/authdaemon: the system's
# /etc/courier is neither read nor changed. To run authtest & co. inside it:
#   nsenter -t $(cat <run>/courier/authdaemond.pid) -m authtest <address> <password>
# imaplogin sleeps 5 s before every "NO Login failed" (compiled in, no setting): our
# unpacked copy gets that sleep(5) patched to sleep(0) (both call sites, checked first).
unpack_hook_courier_imap() {
  local f=$1/usr/lib/courier/courier/imaplogin addrs a text_vma text_off off n=0
  addrs=$(objdump -d "$f" | awk '/\tmov +\$0x5,%edi$/ {a=$1; next}
    /\tcall +[0-9a-f]+ <sleep@plt>$/ && a != "" {sub(":", "", a); print a} {a=""}')
  read -r text_vma text_off < <(objdump -h "$f" | awk '$2 == ".text" {print $4, $6}')
  for a in $addrs; do
    off=$(( 0x$a - 0x$text_vma + 0x$text_off ))
    [[ $(od -An -tx1 -j "$off" -N5 "$f" | tr -d ' \n') == bf05000000 ]] || continue
    printf '\000' | dd of="$f" bs=1 seek=$((off + 1)) conv=notrunc status=none
    n=$((n + 1))
  done
  if (( n == 2 )); then
    say "courier imaplogin: failed-login sleep(5) patched to sleep(0)"
  else
    say "WARNING: courier imaplogin: found $n of 2 sleep(5) sites; failed logins may take 5 s"
  fi
}
unpack_deb courier-imap courier-base
COURIER_PKG=$UNPACKED_DIR
COURIER=$RUN/courier
getent passwd courier >/dev/null || die "user courier missing (made by package courier-base)"
install -d -o root -g root -m 0755 "$COURIER" "$COURIER/etc" "$COURIER/tls"
install -d -o root -g root -m 0700 "$COURIER/etc/userdb"
install -d -o root -g courier -m 0750 "$COURIER/etc/shared"
install -d -o courier -g courier -m 0750 "$COURIER/authdaemon"
[[ -d $COURIER/mail ]] || install -d -o vmail -g vmail -m 0770 "$COURIER/mail"
[[ -d /etc/courier ]] || die "/etc/courier missing (made by package courier-base)"
[[ -d /run/courier/authdaemon ]] || install -d -o courier -g courier -m 0750 /run/courier/authdaemon

render courier-authdaemonrc.in >"$COURIER/etc/authdaemonrc.tmp"
install_file "$COURIER/etc/authdaemonrc.tmp" "$COURIER/etc/authdaemonrc" 0640 || true
chgrp courier "$COURIER/etc/authdaemonrc"
render courier-imapd.in >"$COURIER/imapd.env.tmp"
install_file "$COURIER/imapd.env.tmp" "$COURIER/imapd.env" 0644 || true
# couriertls (GnuTLS) wants key + certificate in one PEM, readable by user courier.
cat "$TLS/server.key" "$TLS/server.pem" >"$COURIER/tls/imapd.pem.new"
install_copy "$COURIER/tls/imapd.pem.new" "$COURIER/tls/imapd.pem" courier:courier 0600
rm -f "$COURIER/tls/imapd.pem.new"
if [[ ! -s $COURIER/tls/dhparams.pem ]]; then
  if [[ -s /etc/courier/dhparams.pem ]]; then
    cp /etc/courier/dhparams.pem "$COURIER/tls/dhparams.pem.new"
  else
    certtool --generate-dh-params --sec-param medium --outfile "$COURIER/tls/dhparams.pem.new" 2>/dev/null
  fi
  install_copy "$COURIER/tls/dhparams.pem.new" "$COURIER/tls/dhparams.pem" courier:courier 0600
  rm -f "$COURIER/tls/dhparams.pem.new"
fi
[[ -f $COURIER/tls/sslcache ]] || install -o courier -g courier -m 0600 /dev/null "$COURIER/tls/sslcache"
[[ -f $COURIER/etc/userdb.dat ]] || makeuserdb -f "$COURIER/etc/userdb"

COURIER_SHA=$( (cat "$COURIER/imapd.env" "$COURIER/etc/authdaemonrc" "$COURIER/tls/imapd.pem"
  echo "$COURIER_PKG") | sha256sum | cut -d' ' -f1)
COURIER_STAMP=$COURIER/.running-config.sha256
courier_pids() { # the running authdaemond and both couriertcpd
  pid_of "$COURIER/authdaemond.pid" authdaemond || true
  pid_of "$COURIER/imapd.pid" couriertcpd || true
  pid_of "$COURIER/imapd-ssl.pid" couriertcpd || true
}
courier_stop() {
  local p
  for p in $(courier_pids); do stop_pid courier "$p"; done
}
mapfile -t cpids < <(courier_pids)
courier_action=running
if (( ${#cpids[@]} == 3 )); then
  if [[ $(cat "$COURIER_STAMP" 2>/dev/null) != "$COURIER_SHA" ]]; then
    say "courier config changed: restarting"
    courier_stop
    courier_action=restarted
  fi
else
  courier_stop
  courier_action=started
fi
if [[ $courier_action != running ]]; then
  rm -f "$COURIER/authdaemon/socket" "$COURIER/authdaemon/pid"
  # shellcheck disable=SC2016  # the inner script expands its own arguments
  unshare --mount --propagation private bash -s -- "$COURIER" "$COURIER_PKG" \
    >>"$COURIER/start.log" 2>&1 <<'INNER' || die "courier failed to start; see $COURIER/start.log"
set -euo pipefail
C=$1 PKG=$2
mount --bind "$C/etc" /etc/courier
mount --bind "$C/authdaemon" /run/courier/authdaemon
setsid /usr/lib/courier/courier-authlib/authdaemond </dev/null >>"$C/authdaemond.log" 2>&1 &
echo $! >"$C/authdaemond.pid"
for ((i = 0; i < 100; i++)); do [[ -S /run/courier/authdaemon/socket ]] && break; sleep 0.05; done
[[ -S /run/courier/authdaemon/socket ]] || { echo "authdaemond: no socket" >&2; exit 1; }
start_tcpd() { # start_tcpd PORT PIDFILE ENV... -- PROGRAM...
  local port=$1 pidfile=$2; shift 2
  local envs=(); while [[ $1 != -- ]]; do envs+=("$1"); shift; done; shift
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin bash -c '
    set -a; . "$1"; shift; for e in "$@"; do [[ $e == -- ]] && break; export "$e"; done
    while [[ $1 != -- ]]; do shift; done; shift
    umask 022
    exec /usr/sbin/couriertcpd -pid="$PIDFILE" -stderr="$LOGFILE" -address=127.0.0.1 \
      -maxprocs="$MAXDAEMONS" -maxperip="$MAXPERIP" -nodnslookup -noidentlookup "$PORT" "$@"
  ' _ "$C/imapd.env" PIDFILE="$pidfile" LOGFILE="$C/imapd.log" PORT="$port" "${envs[@]}" -- "$@" \
    </dev/null >>"$C/imapd.log" 2>&1
}
start_tcpd 2143 "$C/imapd.pid" -- \
  "$PKG/usr/lib/courier/courier/imaplogin" "$PKG/usr/bin/imapd" Maildir
start_tcpd 2993 "$C/imapd-ssl.pid" IMAP_TLS=1 IMAP_STARTTLS=NO -- \
  /usr/bin/couriertls -server -tcpd -user=courier \
  "$PKG/usr/lib/courier/courier/imaplogin" "$PKG/usr/bin/imapd" Maildir
INNER
  echo "$COURIER_SHA" >"$COURIER_STAMP"
fi

# ---------------------------------------------------------------- 8. PostgreSQL, RabbitMQ
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

# ---------------------------------------------------------------- 9. wait + summary
wait_ports 30 143 993 24 || die "dovecot ports not up after 30 s; see $RUN/dovecot/dovecot.log"
wait_ports 30 25 587 465 || die "postfix ports not up after 30 s; see $RUN/postfix/postfix.log"
wait_ports 30 1143 1993 || die "cyrus ports not up after 30 s; see $CYRUS/master.log (no syslog here)"
wait_ports 30 2143 2993 || die "courier ports not up after 30 s; see $COURIER/imapd.log, $COURIER/start.log"

printf '%-10s %-19s 127.0.0.1:143 imap+starttls, :993 imaps, :24 lmtp (config %s)\n' \
  dovecot "$dovecot_action" "$DOVECOT_CONF"
printf '%-10s %-19s 127.0.0.1:25 smtp, :587 submission, :465 submissions (postfix -c %s)\n' \
  postfix "$postfix_action" "$PF_DIR"
printf '%-10s %-19s 127.0.0.1:1143 imap+starttls, :1993 imaps (config %s)\n' \
  cyrus "$cyrus_action" "$CYRUS_CONF"
printf '%-10s %-19s 127.0.0.1:2143 imap+starttls, :2993 imaps (settings %s)\n' \
  courier "$courier_action" "$COURIER/imapd.env"
printf '%-10s %-19s 127.0.0.1:5432 (user postgres, trust)\n' postgresql "$pg_action"
printf '%-10s %-19s 127.0.0.1:5672 (guest/guest)\n' rabbitmq "$rabbit_action"
printf '%-10s %-19s CA %s, users %s, mail %s\n' paths ok "$TLS/ca.pem" "$RUN/users" "$RUN/mail"
