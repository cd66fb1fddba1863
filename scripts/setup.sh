#!/usr/bin/env bash
# Sets up a machine to run and test Deskmail: a virtualenv with Deskmail in it,
# and (with --test) what the integration tests need: PostgreSQL and RabbitMQ
# (started if not already answering on their standard ports, installed from
# Debian's packages if missing), Dovecot, rspamd, and the deployment lint tools.
# Idempotent: a second run only checks.
#
#   scripts/setup.sh          the virtualenv (enough for `deskmail demo`)
#   scripts/setup.sh --test   everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${DESKMAIL_VENV:-.venv}"
PY="${PYTHON:-python3}"

log() { echo "setup: $*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_python() {
  if ! "$PY" -c 'import sys, venv; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    apt_install python3 python3-venv python3-dev
    PY=python3
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.deskmail-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing Deskmail and its dependencies into $VENV"
    if ! { "$VENV/bin/python" -m pip install -q --upgrade pip \
           && "$VENV/bin/python" -m pip install -q -e ".[test]"; } >"$VENV/pip.log" 2>&1; then
      cat "$VENV/pip.log" >&2
      log "pip install failed (log above, also in $VENV/pip.log)"
      exit 1
    fi
    touch "$stamp"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_postgres() {
  port_open 5432 && return 0
  apt_install postgresql
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n1)"
  # Tests connect as postgres over TCP without a password, as on CI machines.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  grep -q "deskmail-tests" "$hba" || sed -i "1i host all all 127.0.0.1/32 trust # deskmail-tests" "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 30); do port_open 5432 && return 0; sleep 1; done
  log "PostgreSQL did not start"; return 1
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  apt_install rabbitmq-server
  rabbitmq-server -detached
  for _ in $(seq 60); do port_open 5672 && return 0; sleep 1; done
  log "RabbitMQ did not start"; return 1
}

ensure_python
if [ "${1:-}" = "--test" ]; then
  ensure_postgres
  ensure_rabbitmq
  scripts/dovecot.sh start >/dev/null
  scripts/rspamd.sh start >/dev/null   # the spam tests' rspamd (Bayes in the Redis on 6379)
  apt_install chromium   # the admin web's browser tests (driven by Playwright, never downloaded)
  PYTHON="$VENV/bin/python" scripts/install-deploy-tools.sh >/dev/null
fi
log "ready"
