#!/usr/bin/env bash
# The demo: brings up the local services, then seeds a realistic mailbox and syncs it
# through a coordinator, RabbitMQ and two workers. Extra arguments go to `mailfleet demo`
# (e.g. --messages 10000). MAILFLEET_DEMO_PROFILE=release builds optimised (slower build,
# faster sync).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services-up.sh
profile=()
[[ ${MAILFLEET_DEMO_PROFILE:-dev} == release ]] && profile=(--release)
exec cargo run "${profile[@]}" -q -p mailfleet -- demo "$@"
