#!/usr/bin/env bash
# Entrypoint of the demo mail server container: prepares <run> (a volume), creates the test
# CA and leaf certificate on the first start, then runs Dovecot and Postfix in the
# foreground and stops when either stops. Mail users are files under <run>/users/ (see
# scripts/mail-user.sh and crates/mailgen/src/dovecot.rs); no reload is needed.
set -euo pipefail

RUN=${MAILFLEET_RUN_DIR:-/var/lib/mailfleet-dev}
TLS=$RUN/tls
say() { printf 'mailserver: %s\n' "$*" >&2; }

install -d -o root -g root -m 0755 "$RUN" "$RUN/users" "$TLS"
[[ -d $RUN/mail ]] || install -d -o vmail -g vmail -m 0770 "$RUN/mail"

if ! [[ -s $TLS/ca.pem && -s $TLS/ca.key && -s $TLS/server.pem && -s $TLS/server.key ]]; then
  say "creating the test CA and leaf certificate in $TLS"
  tmp=$(mktemp -d "$TLS/.new.XXXXXX")
  (
    cd "$tmp"
    umask 077
    openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout ca.key -out ca.csr \
      -subj "/O=mailfleet/CN=mailfleet demo test CA" -config /dev/null 2>/dev/null
    openssl x509 -req -in ca.csr -signkey ca.key -days 3650 -sha256 \
      -set_serial "0x$(openssl rand -hex 16)" \
      -extfile /etc/mailfleet/tls-ca.ext -extensions v3_ca -out ca.pem 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr \
      -subj "/O=mailfleet/CN=mailserver" -config /dev/null 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key \
      -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
      -extfile /etc/mailfleet/tls-server.ext -extensions v3_server -out server.pem 2>/dev/null
    openssl verify -CAfile ca.pem server.pem >/dev/null
    chmod 0644 ca.pem server.pem
    chmod 0600 ca.key server.key
    mv -f ca.key ca.pem server.key server.pem "$TLS/"
  )
  rm -rf "$tmp"
fi

doveconf -n >/dev/null
postfix check

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait; exit 0; }
trap stop TERM INT
dovecot -F &
pids+=($!)
postfix start-fg &
pids+=($!)
say "dovecot (imap 143, imaps 993) and postfix (smtp 25, submission 587, submissions 465) started"
wait -n
say "a daemon exited: stopping"
kill -TERM "${pids[@]}" 2>/dev/null || true
wait
exit 1
