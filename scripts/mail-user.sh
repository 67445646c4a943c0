#!/usr/bin/env bash
# Add or remove a mail user of the local Dovecot instance (see scripts/services-up.sh),
# exactly as the Rust test kit does it: no reload needed.
#   mail-user.sh add <address> <password>   writes <run>/users/<address> (mode 0644)
#   mail-user.sh del <address>              deletes that file and <run>/mail/<domain>/<local>
#   mail-user.sh list
# <run> = ${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}. Addresses are lower-cased
# (Dovecot looks up the lower-cased login name). Passwords may not contain ':' or newlines.
set -euo pipefail
RUN=${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}
RUN=${RUN%/}
usage() { echo "usage: $0 add <address> <password> | del <address> | list" >&2; exit 2; }
die() { echo "mail-user: ERROR: $*" >&2; exit 1; }

check_addr() {
  [[ $1 =~ ^[a-z0-9._+-]+@[a-z0-9.-]+$ && $1 != *..* && $1 != .* ]] \
    || die "bad address '$1' (expected local@domain, [a-z0-9._+-])"
}
[[ -d $RUN/users ]] || die "$RUN/users missing: run scripts/services-up.sh first"

case ${1:-} in
  add)
    (( $# == 3 )) || usage
    addr=${2,,}; pass=$3
    check_addr "$addr"
    [[ -n $pass && $pass != *:* && $pass != *$'\n'* ]] || die "password must be non-empty, without ':' or newline"
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
    echo "added $addr"
    ;;
  del)
    (( $# == 2 )) || usage
    addr=${2,,}
    check_addr "$addr"
    rm -f "$RUN/users/$addr"
    rm -rf "$RUN/mail/${addr#*@}/${addr%@*}"
    echo "deleted $addr"
    ;;
  list)
    ls -1 "$RUN/users"
    ;;
  *) usage ;;
esac
