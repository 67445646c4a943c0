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

# Formatting and lints, as CI checks them (the deployment files too).
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    deploy/check.sh

# Helm chart, docker-compose.yml, Dockerfiles and mail server config, checked with helm,
# kubernetes-validate, docker-compose config, check-jsonschema, hadolint, doveconf, postconf.
deploy-check:
    deploy/check.sh

# `helm lint` of the chart with the values CI uses (the pinned helm that deploy/check.sh installs).
helm-lint:
    deploy/check.sh helm lint --strict deploy/helm/mailfleet -f deploy/helm/mailfleet/ci/test-values.yaml

# Render the chart: `just helm-template --set keda.enabled=false`.
helm-template *ARGS:
    deploy/check.sh helm template mailfleet deploy/helm/mailfleet -f deploy/helm/mailfleet/ci/test-values.yaml {{ARGS}}

# The whole fleet in Docker (needs a Docker engine, MAILFLEET_SECRET_KEY and MAILFLEET_API_TOKEN).
compose-up WORKERS="2":
    docker compose up -d --build --scale worker={{WORKERS}}

compose-down:
    docker compose down

# `mailfleet demo` against the compose mail server: `just compose-demo --messages 10000`.
compose-demo *ARGS:
    docker compose run --rm demo {{ARGS}}

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
