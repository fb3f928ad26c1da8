#!/usr/bin/env bash
# StreamSpace, the embedded default: installs what is missing (Debian/Ubuntu packages), builds, and
# starts the control plane on http://127.0.0.1:8000 with SQLite under ./data and one embedded local
# agent (process runtime). Every STREAMSPACE_* variable of the README is honoured.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '[run.sh] %s\n' "$*"; }

# --- what the control plane will do (kept self-contained: tests source this part on its own, and so can you to try it)
# The value of the last command-line setting named $1 (--key value, --key=value, /key value, /key=value, key=value;
# any case), as .NET's command-line configuration reads the control plane's arguments ($2...); status 1 when no
# argument names it (an empty value is a value).
arg_lookup() {
  local want=${1,,} key value found="" given=1; shift
  while [ $# -gt 0 ]; do
    key=$1; shift
    case $key in --*) key=${key#--} ;; /*) key=${key#/} ;; -*) continue ;; *=*) ;; *) continue ;; esac
    if [[ $key == *=* ]]; then value=${key#*=}; key=${key%%=*}; elif [ $# -gt 0 ]; then value=$1; shift; else break; fi
    [ "${key,,}" = "$want" ] && { found=$value; given=0; }
  done
  printf '%s' "$found"
  return $given
}
# The value of the environment variable .NET's configuration reads as setting $1 (sections joined by ":"): its name in
# any case, "__" for ":", after the prefix $2 (when given); status 1 when there is none (an empty value is a value).
env_lookup() {
  local _want=${1,,} _prefix=${2:-} _name _key
  for _name in $(compgen -e); do
    _key=${_name,,}
    if [ -n "$_prefix" ]; then [[ $_key == "${_prefix,,}"* ]] || continue; _key=${_key#"${_prefix,,}"}; fi
    [ "${_key//__/:}" = "$_want" ] && { printf '%s' "${!_name}"; return 0; }
  done
  return 1
}
# The value of the control plane's setting $1 (sections joined by ":") given its arguments ($2...), from the first of
# the places ASP.NET Core reads it from (WebApplication.CreateBuilder, no appsettings file where run.sh starts it): a
# command-line argument, an environment variable, one prefixed DOTNET_, one prefixed ASPNETCORE_. Status 1 when none
# sets it; an empty value is a value (it hides those below).
config_lookup() {
  local want=$1; shift
  arg_lookup "$want" "$@" || env_lookup "$want" || env_lookup "$want" DOTNET_ || env_lookup "$want" ASPNETCORE_
}
# The listen addresses the control plane takes (StreamSpaceApp.Build): its urls setting (a --urls argument, else the
# variables URLS, DOTNET_URLS, ASPNETCORE_URLS in that order), else STREAMSPACE_URLS, else http://127.0.0.1:8000.
control_plane_urls() {
  local found
  found=$(config_lookup urls "$@") || found=""
  [ -n "$found" ] || found=$(config_lookup STREAMSPACE_URLS "$@") || found=""
  printf '%s' "${found:-http://127.0.0.1:8000}"
}
# Whether the control plane runs its embedded agent (StreamSpaceOptions.FromConfiguration), each setting read wherever
# it comes from (config_lookup): STREAMSPACE_EMBEDDED_AGENT as it reads it (1, true, yes, on or 0, false, no, off in any
# case, spaces around; empty is unset, so false), the StreamSpace:EmbeddedAgent setting (true or false, any case, spaces
# around) winning over it. A value it cannot read stops the control plane: no agent then either.
embedded_agent_on() {
  local v on=false
  v=$(config_lookup STREAMSPACE_EMBEDDED_AGENT "$@") || v=""
  v=${v,,}; v=${v#"${v%%[![:space:]]*}"}; v=${v%"${v##*[![:space:]]}"}
  case $v in "" | 0 | false | no | off) ;; 1 | true | yes | on) on=true ;; *) return 1 ;; esac
  if v=$(config_lookup StreamSpace:EmbeddedAgent "$@"); then
    v=${v,,}; v=${v#"${v%%[![:space:]]*}"}; v=${v%"${v##*[![:space:]]}"}
    case $v in true) on=true ;; false) on=false ;; *) return 1 ;; esac
  fi
  [ "$on" = true ]
}
# The data folder the control plane uses (StreamSpaceOptions.FromConfiguration), as given (a relative one is under the
# folder run.sh starts it in): the StreamSpace:DataFolder setting, else STREAMSPACE_DATA (empty is unset), else ./data,
# each setting read wherever it comes from (config_lookup).
data_folder() {
  local v
  if v=$(config_lookup StreamSpace:DataFolder "$@"); then printf '%s' "$v"; return 0; fi
  v=$(config_lookup STREAMSPACE_DATA "$@") || v=""
  printf '%s' "${v:-./data}"
}
# The generated admin password saved in data folder $1, or nothing. The control plane writes that file only at the start
# that creates admin with a generated password, before it listens.
admin_password_saved() { cat "$1/admin-password.txt" 2>/dev/null || true; }
# What to tell a person about signing in as admin once the control plane answers, given its data folder ($1) and what
# admin_password_saved said before it started ($2). The password only when this start made admin with a generated one:
# STREAMSPACE_ADMIN_PASSWORD applies to a database's first start only, and a saved password may have been changed since.
admin_login() {
  local saved
  saved=$(admin_password_saved "$1")
  if [ -n "$saved" ] && [ "$saved" != "$2" ]; then
    echo "  admin login: admin / $saved  (saved in $1/admin-password.txt)"
  elif [ -n "$saved" ]; then
    echo "  admin login: admin / the password of this database's first start, unless it was changed since (STREAMSPACE_ADMIN_PASSWORD then, or the generated one saved in $1/admin-password.txt)"
  else
    echo "  admin login: admin / the password of this database's first start, unless it was changed since (STREAMSPACE_ADMIN_PASSWORD then, or the generated one that start printed)"
  fi
}
# The host of a listen address (IPv6 in brackets) and its port (the scheme's default when it names none).
listen_host() { local a=${1#*://}; a=${a%%/*}; case $a in \[*) printf '%s' "${a%%]*}]" ;; *) printf '%s' "${a%%:*}" ;; esac; }
listen_port() {
  local a=${1#*://}; a=${a%%/*}
  case $a in \[*) a=${a#*]} ;; *) a=${a#"${a%%:*}"} ;; esac
  if [ -n "${a#:}" ]; then printf '%s' "${a#:}"; elif [ "${1%%://*}" = https ]; then printf 443; else printf 80; fi
}
# Kestrel listens on every interface for *, +, 0.0.0.0, [::] and any host name other than localhost.
all_interfaces() {
  case ${1,,} in
    localhost) return 1 ;;
    '*' | + | 0.0.0.0 | '[::]') return 0 ;;
    \[*\]) return 1 ;;
  esac
  ! [[ $1 =~ ^[0-9]+(\.[0-9]+){3}$ ]]
}
# Nothing answers at a wildcard address itself: this machine reaches such a listener on 127.0.0.1 (an IPv6 [::]
# listener is dual-mode), and so does a person on it. A host name stays as given for the person, who chose it.
probe_url() {
  if all_interfaces "$(listen_host "$1")"; then printf '%s://127.0.0.1:%s' "${1%%://*}" "$(listen_port "$1")"; else printf '%s' "${1%/}"; fi
}
open_url() { case $(listen_host "$1") in '*' | + | 0.0.0.0 | '[::]') probe_url "$1" ;; *) printf '%s' "${1%/}" ;; esac; }
# The HTTP status of GET $1, or 000 when nothing answered it with HTTP (refused, timed out, or curl itself missing).
http_status() {
  local code
  code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null) || true
  case $code in [1-5][0-9][0-9]) printf '%s' "$code" ;; *) printf 000 ;; esac
}
# --- end of what the control plane will do

# Packages a local session needs: TigerVNC (one Xvnc per session), the built-in templates' apps, matchbox (a window
# manager that makes each app fill the session's desktop as the viewer resizes it), and setsid/setpriv (util-linux)
# to run sessions in their own process group as an unprivileged user; curl, which this script probes /healthz with; and
# jq, which the README's first API calls read the token with.
APT_PACKAGES=(tigervnc-standalone-server matchbox-window-manager xterm firefox-esr chromium util-linux procps ca-certificates curl jq)
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
  log "not a Debian/Ubuntu machine: install TigerVNC (Xvnc), xterm, firefox, chromium and curl yourself"
fi
command -v dotnet >/dev/null || { log "the .NET 10 SDK is required: dotnet is not on PATH"; exit 1; }
command -v curl >/dev/null || { log "curl is required (it probes the control plane's /healthz): curl is not on PATH"; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

# Published ReadyToRun (precompiled): a restart comes up with far less JIT work, which is what decides how fast
# thousands of agents are back after one (bench/run.sh storm: 7.8 s against 11.2 s for a plain build).
# MSBuild writes its errors to stdout: kept, and shown only when the build fails.
log "building (Release, ReadyToRun)"
if ! build_output=$(dotnet publish src/StreamSpace.ControlPlane/StreamSpace.ControlPlane.csproj -c Release --use-current-runtime \
    --self-contained false -p:PublishReadyToRun=true -nologo -v:q -o .build/control-plane 2>&1); then
  printf '%s\n' "$build_output" >&2
  log "the build failed (dotnet publish's output is above)"
  exit 1
fi

export STREAMSPACE_DATA=${STREAMSPACE_DATA:-./data}
export STREAMSPACE_EMBEDDED_AGENT=${STREAMSPACE_EMBEDDED_AGENT:-true}
mkdir -p "$STREAMSPACE_DATA"
listen=$(control_plane_urls "$@"); listen=${listen%%;*}
if embedded_agent_on "$@"; then embedded=true; else embedded=false; fi
data=$(data_folder "$@")
admin_before=$(admin_password_saved "$data")
url=$(open_url "$listen")     # what a person opens
probe=$(probe_url "$listen")  # what this script asks /healthz at

# Something already answering there (a second ./run.sh, another service) would answer the readiness probe below
# for us: say so instead of announcing a platform that is not ours.
if [ "$(http_status "$probe/healthz")" != 000 ]; then
  log "something already answers on $probe (another ./run.sh?): stop it, or choose another address with STREAMSPACE_URLS or --urls"
  exit 1
fi

log "starting the control plane on $listen (data: $data, embedded agent: $embedded)"
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
  case $(http_status "$probe/healthz") in 2??) break ;; esac
  waited=$((waited + 1))
  [ $waited -eq 240 ] && log "the control plane has not answered on $probe for 120 s; still waiting for it (its log is above)"
  sleep 0.5
done

echo
echo "StreamSpace is running: $url"
if all_interfaces "$(listen_host "$listen")"; then
  address=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -m1 -E '^[0-9]+(\.[0-9]+){3}$' || true)
  echo "  listening on all interfaces ($listen): from another machine use this machine's address${address:+, e.g. http://$address:$(listen_port "$listen")}"
fi
admin_login "$data" "$admin_before"
if [ "$embedded" = true ]; then
  echo "  an embedded local agent (process runtime) is attached"
else
  echo "  no embedded agent: agents registered with POST /api/v1/agents connect by themselves (README: a standalone agent)"
fi
if [ "$embedded" = true ]; then
  echo "  stop with Ctrl-C (running sessions keep running and the next ./run.sh takes them back; end them in the UI to stop them)"
else
  echo "  stop with Ctrl-C"
fi
echo
wait $cp_pid
