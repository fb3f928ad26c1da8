#!/usr/bin/env bash
# A private PostgreSQL for tests and benchmarks: own data folder, loopback only, trust auth for
# the local superuser. Usage: scripts/postgres.sh start|stop|url [DIR] [PORT]
# Tests run it without durable commits (fsync, synchronous_commit and full_page_writes off: a crash of a test
# server loses nothing anyone needs). PG_DURABLE=1 keeps PostgreSQL's own defaults, as a deployment runs it; the
# benchmarks use that.
set -euo pipefail
cmd=${1:?start|stop|url}
dir=${2:-${PGTEST_DIR:-$(pwd)/.tmp/postgres}}
port=${3:-${PGTEST_PORT:-54329}}

find_bin() {
  local b
  for b in /usr/lib/postgresql/*/bin; do [ -x "$b/pg_ctl" ] && { echo "$b"; return; }; done
  command -v pg_ctl >/dev/null && { dirname "$(command -v pg_ctl)"; return; }
  return 1
}

run_as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }

case "$cmd" in
  start)
    bin=$(find_bin) || { echo "postgres.sh: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      run_as_pg "'$bin/initdb' -D '$dir' -U postgres --auth=trust -E UTF8 >/dev/null"
    fi
    durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    label=""
    [ "${PG_DURABLE:-0}" = 1 ] && { durability=""; label=", durable commits"; }
    if run_as_pg "'$bin/pg_ctl' -D '$dir' status" >/dev/null 2>&1; then
      echo "postgres.sh: already running in $dir"
    else
      run_as_pg "'$bin/pg_ctl' -D '$dir' -l '$dir/server.log' -w -t 60 -o \"-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c max_connections=300 $durability\" start" >/dev/null
      echo "postgres.sh: started on 127.0.0.1:$port ($dir$label)"
    fi
    ;;
  stop)
    bin=$(find_bin) || exit 0
    [ -f "$dir/PG_VERSION" ] && run_as_pg "'$bin/pg_ctl' -D '$dir' -m fast -w stop" >/dev/null 2>&1 || true
    ;;
  url)
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  *) echo "usage: $0 start|stop|url [DIR] [PORT]" >&2; exit 2 ;;
esac
