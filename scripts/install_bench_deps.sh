#!/usr/bin/env bash
# The peers the benchmarks compare the engine with, each set in its own venv:
#   .deps/bench-peers      Crossbar.io (WAMP router + autobahn) and nats-py
#   .deps/bench-hypercorn  hypercorn's trio worker, the HTTP server the RestApiModule's h11
#                          server was measured against (its pins conflict with crossbar's)
# nats-server comes from the Debian package (scripts/install_services.sh).
# Cached: a finished install leaves .installed behind, naming what it installed.
set -euo pipefail
cd "$(dirname "$0")/.."

CROSSBAR=26.10.1
NATS_PY=2.16.0
HYPERCORN=0.18.0

# install_venv TARGET CHECK PACKAGES...: a fresh venv with PACKAGES, then CHECK run in it.
install_venv() {
  local target=$1 check=$2
  shift 2
  local want="$*" stamp="$target/.installed"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  rm -rf "$target"
  mkdir -p .deps
  python3 -m venv "$target"
  "$target/bin/python" -m pip install -qq --upgrade pip
  echo "installing $want into $target (a few minutes the first time)"
  "$target/bin/python" -m pip install -qq "$@"
  "$target/bin/python" -c "$check"
  echo "$want" > "$stamp"
}

install_venv .deps/bench-peers "import nats, autobahn, crossbar" \
  "crossbar==$CROSSBAR" "nats-py==$NATS_PY"
install_venv .deps/bench-hypercorn "import hypercorn.trio" "hypercorn[trio]==$HYPERCORN"
