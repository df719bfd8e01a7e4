#!/usr/bin/env bash
# Server programs the tests and benchmarks start on loopback ports of their own:
# redis-server (state/stream/queue/pubsub/cron redis adapters) and nats-server (a benchmark
# baseline), from the Debian packages. Nothing is started here and no service is enabled.
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Tests start their own servers on free ports; a system service the package may start is unused.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for program in "${missing[@]}"; do
  command -v "$program" >/dev/null || { echo "install_services: $program not found after install" >&2; exit 1; }
done
