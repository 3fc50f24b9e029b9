#!/usr/bin/env bash
# Installs (if needed) and starts Debian's PostgreSQL on loopback for the store tests,
# then prints the URL the tests read from TRAINLEDGER_TEST_PG_URL.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
bin=/usr/lib/postgresql/$ver/bin
data=${TRAINLEDGER_PG_DATA:-/tmp/trainledger-pg}
port=${TRAINLEDGER_PG_PORT:-55432}
if [ ! -f "$data/PG_VERSION" ]; then
  mkdir -p "$data" && chown postgres "$data"
  su postgres -c "$bin/initdb -D $data -A trust -U postgres" >/dev/null 2>&1
fi
if ! su postgres -c "$bin/pg_ctl -D $data status" >/dev/null 2>&1; then
  su postgres -c "$bin/pg_ctl -D $data -l $data/log -w -o '-c listen_addresses=127.0.0.1 -p $port -k /tmp' start" >/dev/null
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
