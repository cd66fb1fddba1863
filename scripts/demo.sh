#!/usr/bin/env bash
# The newcomer's first command: sets up Deskmail and runs its main job on the
# embedded default (in-memory queues, embedded PostgreSQL under ./var): the
# bundled sample mails become requests, auto-replies land in ./var/outbox.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
unset DATABASE_URL AMQP_URL
exec .venv/bin/deskmail demo "$@"
