#!/usr/bin/env bash
# StreamSpace, the embedded default: installs what is missing (Debian/Ubuntu packages), builds, and
# starts the control plane on http://127.0.0.1:8000 with SQLite under ./data and one embedded local
# agent (process runtime). Every STREAMSPACE_* variable of the README is honoured.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '[run.sh] %s\n' "$*"; }

# Packages a local session needs: TigerVNC (one Xvnc per session), the built-in templates' apps, matchbox (a window
# manager that makes each app fill the session's desktop as the viewer resizes it), and setsid/setpriv (util-linux)
# to run sessions in their own process group as an unprivileged user.
APT_PACKAGES=(tigervnc-standalone-server matchbox-window-manager xterm firefox-esr chromium util-linux procps ca-certificates)
if command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing missing packages: ${missing[*]} (this happens once)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  log "not a Debian/Ubuntu machine: install TigerVNC (Xvnc), xterm, firefox and chromium yourself"
fi
command -v dotnet >/dev/null || { log "the .NET 10 SDK is required: dotnet is not on PATH"; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# Published ReadyToRun (precompiled): a restart comes up with far less JIT work, which is what decides how fast
# thousands of agents are back after one (bench/run.sh storm: 7.8 s against 11.2 s for a plain build).
log "building (Release, ReadyToRun)"
dotnet publish src/StreamSpace.ControlPlane/StreamSpace.ControlPlane.csproj -c Release --use-current-runtime --self-contained false \
  -p:PublishReadyToRun=true -nologo -v:q -o .build/control-plane >/dev/null

export STREAMSPACE_DATA=${STREAMSPACE_DATA:-./data}
export STREAMSPACE_URLS=${STREAMSPACE_URLS:-http://127.0.0.1:8000}
export STREAMSPACE_EMBEDDED_AGENT=${STREAMSPACE_EMBEDDED_AGENT:-true}
mkdir -p "$STREAMSPACE_DATA"
url=${STREAMSPACE_URLS%%;*}

# Something already answering there (a second ./run.sh, another service) would answer the readiness probe below
# for us: say so instead of announcing a platform that is not ours.
if [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url/healthz" 2>/dev/null)" != "000" ]; then
  log "something already answers on $url (another ./run.sh?): stop it, or choose another address with STREAMSPACE_URLS"
  exit 1
fi

log "starting the control plane on $url (data: $STREAMSPACE_DATA, embedded agent: $STREAMSPACE_EMBEDDED_AGENT)"
.build/control-plane/StreamSpace.ControlPlane "$@" &
cp_pid=$!
trap 'kill -TERM $cp_pid 2>/dev/null; wait $cp_pid 2>/dev/null' INT TERM

waited=0
while true; do
  # Alive first: only then is an answer on $url ours.
  if ! kill -0 $cp_pid 2>/dev/null; then
    code=0; wait $cp_pid || code=$?
    log "the control plane exited during start-up (exit code $code; its message is above)"
    exit 1
  fi
  curl -fsS "$url/healthz" >/dev/null 2>&1 && break
  waited=$((waited + 1))
  [ $waited -eq 240 ] && log "the control plane has not answered on $url for 120 s; still waiting for it (its log is above)"
  sleep 0.5
done

echo
echo "StreamSpace is running: $url"
if [ -n "${STREAMSPACE_ADMIN_PASSWORD:-}" ]; then
  echo "  admin login: admin / (the password in STREAMSPACE_ADMIN_PASSWORD)"
elif [ -f "$STREAMSPACE_DATA/admin-password.txt" ]; then
  echo "  admin login: admin / $(cat "$STREAMSPACE_DATA/admin-password.txt")  (saved in $STREAMSPACE_DATA/admin-password.txt)"
fi
if [ "$STREAMSPACE_EMBEDDED_AGENT" = "true" ]; then
  echo "  an embedded local agent (process runtime) is attached"
else
  echo "  no agent is attached: add one with POST /api/v1/agents and start src/StreamSpace.Agent"
fi
if [ "$STREAMSPACE_EMBEDDED_AGENT" = "true" ]; then
  echo "  stop with Ctrl-C (running sessions keep running and the next ./run.sh takes them back; end them in the UI to stop them)"
else
  echo "  stop with Ctrl-C"
fi
echo
wait $cp_pid
