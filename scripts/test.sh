#!/usr/bin/env bash
# Sets up everything the test suite needs and runs it (unit, integration and
# the fault-injection scenarios at their CI size). Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not slow"` for the quick loop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export DESKMAIL_CA_FILE="${DOVECOT_DIR:-/tmp/deskmail-dovecot}/tls/cert.pem"
exec .venv/bin/python -m pytest "$@"
