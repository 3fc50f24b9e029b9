#!/usr/bin/env bash
# Sets up .venv, starts PostgreSQL on loopback, runs the whole test suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
if url=$(bash scripts/start-postgres.sh); then
  export TRAINLEDGER_TEST_PG_URL=$url
else
  echo "!!!!! PostgreSQL could not be started here: the PostgreSQL store tests will be SKIPPED !!!!!" >&2
fi
exec .venv/bin/python -m pytest "$@"
