#!/usr/bin/env bash
# Benchmarks (not part of ./test.sh). Each prints its figures and a ratio against a baseline or target
# measured in the same run. Usage: bench/run.sh [fanin|create|storm|launch|all] [extra args, e.g. --agents 1000,5000, or --rounds 5
# to run the creation benchmark five times and print the spread of its ratio]
# BENCH_CP_<NAME>=<value> sets <NAME> for the control plane under test only (e.g. BENCH_CP_DOTNET_gcServer=0).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-all}; shift || true
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# Quiet builds that still show why when one fails (set -e would otherwise end the script without a word).
quiet() { local out; out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; echo "bench/run.sh: '$*' failed" >&2; exit 1; }; }
quiet dotnet build bench/StreamSpace.Bench -c Release -nologo -v:q -o .build/bench
# The control plane under test is built the way run.sh deploys it (ReadyToRun), so start-up figures are a deployment's.
quiet dotnet publish src/StreamSpace.ControlPlane -c Release --use-current-runtime --self-contained false -p:PublishReadyToRun=true \
  -nologo -v:q -o .build/bench-control-plane
# Thousands of sockets left in TIME_WAIT by an earlier run (a storm opens ~15 000 connections) slow every new
# connection's port search: back-to-back storms measured ~18 s against ~11 s from a clean state. Let them expire.
tw() { ss -tan state time-wait 2>/dev/null | tail -n +2 | wc -l; }
if command -v ss >/dev/null && [ "$(tw)" -gt 1000 ]; then
  echo "waiting for $(tw) TIME_WAIT sockets of an earlier run to expire (up to 70 s)"
  for _ in $(seq 1 70); do [ "$(tw)" -le 1000 ] && break; sleep 1; done
fi
PGDIR=$(pwd)/.tmp/postgres-bench; PGPORT=${PGBENCH_PORT:-54340}
# The server runs as a deployment runs it: durable commits (PostgreSQL's defaults), so a 201 means the session and its
# start command survive a crash of the database host. BENCH_PG_DURABLE=0 measures on the tests' settings instead
# (fsync, synchronous_commit and full_page_writes off). Restarted so the settings asked for are the ones in force.
scripts/postgres.sh stop "$PGDIR" "$PGPORT"
PG_DURABLE=${BENCH_PG_DURABLE:-1} scripts/postgres.sh start "$PGDIR" "$PGPORT" >/dev/null
trap 'scripts/postgres.sh stop "$PGDIR" "$PGPORT"' EXIT
.build/bench/StreamSpace.Bench "$scenario" --pg "postgres://postgres@127.0.0.1:$PGPORT/postgres" --exe .build/bench-control-plane/StreamSpace.ControlPlane "$@"
