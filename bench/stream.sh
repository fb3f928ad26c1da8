#!/usr/bin/env bash
# Stream relay benchmark: direct TCP vs websockify vs a bare 3-hop forwarder chain vs StreamSpace's full relay path, throughput and
# 64-byte round-trip latency (paced like interactive input, and saturated) at 1, 10 and 100 streams.
# Method in bench/StreamSpace.StreamBench/Program.cs. Builds Release, runs once (~1 minute).
# Usage: bench/stream.sh [--mib 128] [--pings 2000] [--pace-ms 16] [--paced-seconds 2] [--streams 1,10,100] [--only ours|floor|native] [--websockify-target unix|tcp]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v websockify >/dev/null || { echo "websockify is missing: apt-get install -y websockify" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
out=$(dotnet build bench/StreamSpace.StreamBench -c Release -nologo -v:q -o .build/streambench 2>&1) || { printf '%s\n' "$out" >&2; echo "bench/stream.sh: the build failed" >&2; exit 1; }
# The native 3-hop floor's forwarder (C, one thread, epoll); without a C compiler that path is skipped.
if command -v cc >/dev/null; then
  cc -O2 -Wall -Wextra -Werror -o .build/streambench/native-forwarder bench/native-forwarder/forwarder.c
else
  echo "no C compiler (apt-get install -y gcc): the native floor is skipped" >&2
fi
exec .build/streambench/StreamSpace.StreamBench "$@"
