#!/usr/bin/env bash
# StreamSpace test command: installs test prerequisites, starts a private PostgreSQL on a loopback
# port, builds, runs every test tier (independent tiers in parallel), stops what it started and ends
# with the line "N passed, N failed". Exit code 0 only when nothing failed.
set -uo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
ART="$ROOT/artifacts/test-results"
TMPD="$ROOT/.tmp"
rm -rf "$ART"; mkdir -p "$ART" "$TMPD"

log() { printf '[test.sh %(%H:%M:%S)T] %s\n' -1 "$*"; }

# ---- prerequisites -------------------------------------------------------------------------------
# Debian packages the tests use: PostgreSQL server, TigerVNC + xterm for sessions, Chromium for the
# browser tests, iptables/iproute2 for network fault tests, python3 for a vfork case of the process runtime,
# websockify for the relay benchmark baseline.
APT_PACKAGES=(postgresql tigervnc-standalone-server matchbox-window-manager xterm x11-utils x11-xserver-utils chromium iptables iproute2 procps util-linux psmisc curl ca-certificates python3)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >"$TMPD/apt.log" 2>&1 \
    || { log "apt-get install failed, see $TMPD/apt.log"; tail -20 "$TMPD/apt.log"; echo "0 passed, 1 failed"; exit 1; }
fi
# npm builds the noVNC viewer assets at build time (the machine image usually has Node.js already).
if ! command -v npm >/dev/null; then
  log "installing nodejs and npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >"$TMPD/apt-npm.log" 2>&1 || { log "npm install failed"; echo "0 passed, 1 failed"; exit 1; }
fi
command -v dotnet >/dev/null || { log "the .NET 10 SDK is required (dotnet not on PATH)"; echo "0 passed, 1 failed"; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# ---- private PostgreSQL --------------------------------------------------------------------------
PGDIR="$TMPD/postgres-test"
PGPORT=${PGTEST_PORT:-54330}
# A port nobody listens on can still be taken as the local end of some connection (the ephemeral range covers
# it), so a failed start moves on to the next port instead of failing the run.
pg_started=0
for _ in 1 2 3 4 5 6 7 8 9 10; do
  while (exec 3<>/dev/tcp/127.0.0.1/$PGPORT) 2>/dev/null; do PGPORT=$((PGPORT+1)); done
  rm -rf "$PGDIR"
  if scripts/postgres.sh start "$PGDIR" "$PGPORT"; then pg_started=1; break; fi
  log "PostgreSQL could not start on port $PGPORT; trying the next one"
  PGPORT=$((PGPORT+1))
done
[ "$pg_started" = 1 ] || { log "PostgreSQL did not start (see $PGDIR/server.log)"; echo "0 passed, 1 failed"; exit 1; }
export STREAMSPACE_TEST_POSTGRES="postgres://postgres@127.0.0.1:$PGPORT/postgres"

cleanup() {
  scripts/postgres.sh stop "$PGDIR" "$PGPORT"
  # Sessions started by tests run in their own process groups by design (they outlive agents); end any
  # a failed test left behind: their working directory is a home under a test's temp folder.
  for p in /proc/[0-9]*; do
    case "$(readlink "$p/cwd" 2>/dev/null)" in "${TMPDIR:-/tmp}"/streamspace-*) kill -9 "${p#/proc/}" 2>/dev/null ;; esac
  done
  pkill -f "streamspace-tests" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# ---- build ---------------------------------------------------------------------------------------
log "building"
if ! dotnet build StreamSpace.slnx -c Debug -nologo -v:q >"$ART/build.log" 2>&1; then
  grep -E 'error|Error' "$ART/build.log" | sort -u | head -40
  echo "0 passed, 1 failed"; exit 1
fi

# ---- test tiers ----------------------------------------------------------------------------------
# Each test project is an executable (xunit v3); its summary line "Total: N, Errors: E, Failed: F,
# Skipped: S, Not Run: R" is what we count. A tier that dies without a summary counts as one failure.
# Tests marked [Trait("Category","Timing")] compare throughput or latency: they run afterwards, alone.
run_tier() { # project, timeout seconds, log name, extra runner args...
  local name=$1 limit=$2 logname=$3; shift 3
  local exe="tests/$name/bin/Debug/net10.0/$name"
  [ -x "$exe" ] || { echo "MISSING $name" >"$ART/$logname.log"; return; }
  log "tier $logname started"
  timeout --kill-after=30 "$limit" "$exe" -noColor -xml "$ART/$logname.xml" "$@" >"$ART/$logname.log" 2>&1
  log "tier $logname finished (exit $?)"
}

TIERS_A=(StreamSpace.ControlPlane.Tests)
TIERS_B=()
for t in StreamSpace.Protocol.Tests StreamSpace.Agent.Tests StreamSpace.Web.Tests; do
  [ -d "tests/$t" ] && TIERS_B+=("$t")
done

export STREAMSPACE_TEST_ARTIFACTS="$ROOT/artifacts/test-results/ui"
( for t in "${TIERS_A[@]}"; do run_tier "$t" 1200 "$t" -trait- "Category=Timing"; done ) &
pid_a=$!
( for t in "${TIERS_B[@]}"; do run_tier "$t" 1200 "$t" -trait- "Category=Timing"; done ) &
pid_b=$!
wait $pid_a $pid_b
LOGS=("${TIERS_A[@]}" "${TIERS_B[@]}")
# The end-to-end tier asserts wall-clock bounds of the product (agent online within 2 s of its start,
# offline within 3 heartbeats + 1 s, back within 5 s of a control-plane restart): it runs alone too, and its tests
# one at a time (tests/StreamSpace.EndToEnd.Tests/Infrastructure/OneTestAtATime.cs).
run_tier StreamSpace.EndToEnd.Tests 1200 StreamSpace.EndToEnd.Tests; LOGS+=(StreamSpace.EndToEnd.Tests)
# The browser journeys wait on live refreshes, pastes and session starts in real time: alone as well.
run_tier StreamSpace.UiJourney.Tests 1200 StreamSpace.UiJourney.Tests; LOGS+=(StreamSpace.UiJourney.Tests)
for t in "${TIERS_A[@]}" "${TIERS_B[@]}"; do
  if grep -rqs 'Trait("Category", "Timing")' "tests/$t" --include='*.cs'; then
    run_tier "$t" 600 "$t.timing" -trait "Category=Timing"; LOGS+=("$t.timing")
  fi
done

passed=0; failed=0
for t in "${LOGS[@]}"; do
  f="$ART/$t.log"
  line=$(grep -E 'Total: [0-9]+, Errors: [0-9]+, Failed: [0-9]+, Skipped: [0-9]+' "$f" 2>/dev/null | tail -1)
  if [ -z "$line" ]; then
    log "tier $t produced no summary (crashed or timed out); last lines:"
    tail -20 "$f" 2>/dev/null
    failed=$((failed+1)); continue
  fi
  total=$(sed -E 's/.*Total: ([0-9]+).*/\1/' <<<"$line")
  errors=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
  fails=$(sed -E 's/.*Failed: ([0-9]+).*/\1/' <<<"$line")
  skipped=$(sed -E 's/.*Skipped: ([0-9]+).*/\1/' <<<"$line")
  notrun=$(sed -E 's/.*Not Run: ([0-9]+).*/\1/' <<<"$line"); [[ "$notrun" =~ ^[0-9]+$ ]] || notrun=0
  p=$((total - fails - skipped - notrun)); f_=$((fails + errors + skipped + notrun))
  log "tier $t: $p passed, $f_ failed"
  if [ "$f_" -gt 0 ]; then grep -E '\[FAIL\]' "$f" | head -30; fi
  passed=$((passed + p)); failed=$((failed + f_))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
