# The daily loop. `just` is on crates.io (cargo install just); every recipe is a plain command.

# Start Dovecot and Postfix (and check Postgres and RabbitMQ).
services-up:
    scripts/services-up.sh

# Stop Dovecot and Postfix.
services-down:
    scripts/services-down.sh

# Seed a demo mailbox and sync it through a coordinator and two workers.
demo *ARGS:
    scripts/demo.sh {{ARGS}}

# The full test suite against the real services.
test *ARGS:
    scripts/test.sh {{ARGS}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Chaos run: workers SIGKILLed and RabbitMQ restarted during a sync (--long for 10k messages).
chaos *ARGS:
    scripts/chaos.sh {{ARGS}}

# mailfleet against mbsync on the same mailbox.
bench *ARGS:
    bench/imap-vs-mbsync.sh {{ARGS}}

# What CI runs.
ci:
    .ci/run

migrate:
    cargo run -q -p mailfleet -- migrate

coordinator:
    cargo run -q -p mailfleet -- coordinator

worker:
    cargo run -q -p mailfleet -- worker
