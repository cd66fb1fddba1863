#!/usr/bin/env bash
# Scores the parser against the reference corpus of others' mail (../shared/corpus,
# or DESKMAIL_CORPUS_DIR): per-field agreement with each source's expectations.
# A measurement, not a test: the corpus is not ours to copy into the repository.
# Fails when a score is below its bar or the corpus is missing. Arguments go to
# bench/corpus_score.py (-v lists every disagreement).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python bench/corpus_score.py "$@"
