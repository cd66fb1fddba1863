#!/usr/bin/env bash
# Sets up everything the test suite needs and runs it (unit, integration and
# the fault-injection scenarios at their CI size). Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not slow"` for the quick loop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
