#!/usr/bin/env bash
# The peers the benchmarks compare the engine with, in their own venv (.deps/bench-peers):
# Crossbar.io (WAMP router + autobahn) and nats-py. nats-server comes from the Debian package
# (scripts/install_services.sh). Cached: a finished install leaves .installed behind.
set -euo pipefail
cd "$(dirname "$0")/.."

CROSSBAR=26.10.1
NATS_PY=2.16.0
target=.deps/bench-peers
stamp="$target/.installed"
want="crossbar==$CROSSBAR nats-py==$NATS_PY"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
rm -rf "$target"
mkdir -p .deps
python3 -m venv "$target"
"$target/bin/python" -m pip install -qq --upgrade pip
echo "installing $want into $target (a few minutes the first time)"
# shellcheck disable=SC2086
"$target/bin/python" -m pip install -qq $want
"$target/bin/crossbar" version >/dev/null
"$target/bin/python" -c "import nats, autobahn"
echo "$want" > "$stamp"
