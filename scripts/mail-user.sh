#!/usr/bin/env bash
# Add or remove a mail user of the local IMAP servers (see scripts/services-up.sh).
#   mail-user.sh [--server S] add <address> <password>
#   mail-user.sh [--server S] del <address>
#   mail-user.sh [--server S] list          (without --server: the Dovecot users)
# S = all (default: every server services-up.sh has set up), dovecot, cyrus or courier;
# may be given more than once. No server needs a reload.
#
#   dovecot  writes <run>/users/<address> (mode 0644), exactly as the Rust test kit does;
#            del also deletes <run>/mail/<domain>/<local>
#   cyrus    (login: the full address) row in the SQLite table users(address, password)
#            of <run>/cyrus/auth/users.sqlite; Cyrus makes INBOX, Drafts, Sent, Archive,
#            Junk and Trash (with their special-use) at the first login. del deletes the
#            mailboxes (IMAP DELETE user/<local>@<domain> as the admin) and the row.
#   courier  (login: the full address) <run>/courier/etc/userdb/<address> + makeuserdb;
#            Maildir++ <run>/courier/mail/<domain>/<local>/Maildir with .Drafts .Sent
#            .Archive .Junk .Trash (INBOX.Sent ... in IMAP), owned by vmail
#
# <run> = ${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}. Addresses are lower-cased
# (Dovecot looks up the lower-cased login name). Passwords may not contain ':' or newlines.
# Run as root. Safe to run in parallel (flock for the Cyrus table; makeuserdb locks).
set -euo pipefail
RUN=${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}
RUN=${RUN%/}
usage() {
  echo "usage: $0 [--server all|dovecot|cyrus|courier]... add <address> <password> | del <address> | list" >&2
  exit 2
}
die() { echo "mail-user: ERROR: $*" >&2; exit 1; }

check_addr() {
  [[ $1 =~ ^[a-z0-9._+-]+@[a-z0-9.-]+$ && $1 != *..* && $1 != .* ]] \
    || die "bad address '$1' (expected local@domain, [a-z0-9._+-])"
}

servers=()
while [[ ${1:-} == --server ]]; do
  [[ -n ${2:-} ]] || usage
  case $2 in all | dovecot | cyrus | courier) servers+=("$2") ;; *) usage ;; esac
  shift 2
done
if (( ${#servers[@]} == 0 )) && [[ ${1:-} == list ]]; then
  servers=(dovecot)   # as before: `list` alone lists the Dovecot users
elif (( ${#servers[@]} == 0 )) || [[ " ${servers[*]} " == *" all "* ]]; then
  servers=(dovecot)
  [[ -s $RUN/cyrus/auth/users.sqlite ]] && servers+=(cyrus)
  [[ -d $RUN/courier/etc/userdb ]] && servers+=(courier)
fi
want() { [[ " ${servers[*]} " == *" $1 "* ]]; }

CYRUS_DB=$RUN/cyrus/auth/users.sqlite
USERDB=$RUN/courier/etc/userdb
want dovecot && { [[ -d $RUN/users ]] || die "$RUN/users missing: run scripts/services-up.sh first"; }
want cyrus && { [[ -s $CYRUS_DB ]] || die "$CYRUS_DB missing: run scripts/services-up.sh first"; }
want courier && { [[ -d $USERDB ]] || die "$USERDB missing: run scripts/services-up.sh first"; }

# The SASL sql plugin opens the table for every login and sets no busy timeout: a login
# that meets a lock (a writer, or even the WAL checkpoint of another reader) fails. So the
# live file is never written: a change is made on a copy that then replaces it (rename),
# one writer at a time (flock). Readers only ever see a complete file and take no lock
# that anyone waits for.
cyrus_read() { sqlite3 -batch -readonly "$CYRUS_DB" "$@"; }
cyrus_write() {
  (
    flock 9
    local new=$CYRUS_DB.new
    cp -p "$CYRUS_DB" "$new"
    sqlite3 -batch "$new" "$@"
    mv -f "$new" "$CYRUS_DB"
  ) 9>"$CYRUS_DB.lock"
}
sql_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# cyrus_admin COMMAND...: one IMAP session on 127.0.0.1:1143 as the admin "cyrus";
# prints the tagged reply of each command (a1 OK ..., a2 NO ...).
cyrus_admin() {
  local pw line i=1 cmd
  pw=$(cat "$RUN/cyrus/admin.pass")
  exec 3<>/dev/tcp/127.0.0.1/1143 || die "cyrus is not listening on 127.0.0.1:1143"
  IFS= read -r -t 10 line <&3 || die "no greeting from cyrus"
  for cmd in "LOGIN cyrus $pw" "$@" LOGOUT; do
    printf 'a%d %s\r\n' "$i" "$cmd" >&3
    while IFS= read -r -t 10 line <&3; do
      line=${line%$'\r'}
      if [[ $line == "a$i "* ]]; then
        [[ $cmd == LOGIN* ]] && { [[ $line == "a$i OK"* ]] || die "cyrus admin login failed: $line"; }
        [[ $cmd == LOGIN* || $cmd == LOGOUT ]] || echo "$line"
        break
      fi
    done
    i=$((i + 1))
  done
  exec 3<&-
}

courier_home() { echo "$RUN/courier/mail/${1#*@}/${1%@*}"; }

case ${1:-} in
  add)
    (( $# == 3 )) || usage
    addr=${2,,}; pass=$3
    check_addr "$addr"
    [[ -n $pass && $pass != *:* && $pass != *$'\n'* ]] || die "password must be non-empty, without ':' or newline"
    if want dovecot; then
      tmp=$(mktemp "$RUN/users/.tmp.XXXXXX")
      printf '%s:{PLAIN}%s::::::\n' "$addr" "$pass" >"$tmp"
      chmod 0644 "$tmp"
      # Dovecot re-reads a cached passwd-file only when its mtime (seconds) or size
      # changed: on a password change within the same second, move the mtime back.
      if [[ -e $RUN/users/$addr ]]; then
        old=$(stat -c %Y "$RUN/users/$addr")
        (( $(stat -c %Y "$tmp") != old )) || touch -d "@$((old - 1))" "$tmp"
      fi
      mv -f "$tmp" "$RUN/users/$addr"      # atomic: Dovecot never sees a half-written file
    fi
    if want cyrus; then
      cyrus_write "INSERT OR REPLACE INTO users (address, password) VALUES ($(sql_quote "$addr"), $(sql_quote "$pass"));"
    fi
    if want courier; then
      home=$(courier_home "$addr")
      hash=$(openssl passwd -6 -stdin <<<"$pass")
      tmp=$(mktemp "$USERDB/.tmp.XXXXXX")   # makeuserdb skips dot files
      printf '%s\tuid=%s|gid=%s|home=%s|mail=%s/Maildir|systempw=%s\n' \
        "$addr" "$(id -u vmail)" "$(id -g vmail)" "$home" "$home" "$hash" >"$tmp"
      chmod 0600 "$tmp"
      mv -f "$tmp" "$USERDB/$addr"
      if [[ ! -d $home/Maildir ]]; then
        install -d -o vmail -g vmail -m 0700 "${home%/*}" "$home"
        # shellcheck disable=SC2016  # $1 is expanded by the inner bash
        setpriv --reuid=vmail --regid=vmail --clear-groups bash -c '
          maildirmake "$1/Maildir.new" && for f in Drafts Sent Archive Junk Trash; do
            maildirmake -f "$f" "$1/Maildir.new"; done && mv "$1/Maildir.new" "$1/Maildir"' _ "$home"
      fi
      makeuserdb -f "$USERDB"
    fi
    echo "added $addr (${servers[*]})"
    ;;
  del)
    (( $# == 2 )) || usage
    addr=${2,,}
    check_addr "$addr"
    if want dovecot; then
      rm -f "$RUN/users/$addr"
      rm -rf "$RUN/mail/${addr#*@}/${addr%@*}"
    fi
    if want cyrus; then
      cyrus_write "DELETE FROM users WHERE address = $(sql_quote "$addr");"
      # The admin may delete a user's INBOX, which deletes all the user's mailboxes; NO
      # if the user never logged in (no mailbox yet).
      mbox="user/${addr%@*}@${addr#*@}"
      reply=$(cyrus_admin "SETACL \"$mbox\" cyrus lrswipkxtecda" "DELETE \"$mbox\"" | tail -n1)
      [[ $reply == *" OK"* || $reply == *"does not exist"* || $reply == *"Mailbox does not exist"* ]] \
        || echo "mail-user: warning: cyrus: DELETE $mbox: $reply" >&2
    fi
    if want courier; then
      rm -f "$USERDB/$addr"
      makeuserdb -f "$USERDB"
      rm -rf "$(courier_home "$addr")"
    fi
    echo "deleted $addr (${servers[*]})"
    ;;
  list)
    (( $# == 1 )) || usage
    if want dovecot; then ls -1 "$RUN/users"; fi
    if want cyrus; then cyrus_read "SELECT address FROM users WHERE address != 'cyrus@localhost' ORDER BY 1;"; fi
    if want courier; then ls -1 "$USERDB"; fi
    ;;
  *) usage ;;
esac
