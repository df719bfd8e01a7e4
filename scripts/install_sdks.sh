#!/usr/bin/env bash
# Installs the official iii SDKs the conformance tests drive, each into its own cached
# folder under .deps/ (a second run is instant). Usage:
#   scripts/install_sdks.sh                     # the default set below
#   scripts/install_sdks.sh py:0.25.0 node:0.22.1
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .deps

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(py:0.4.1 py:0.11.6 py:0.25.0 node:0.3.0 node:0.11.6 node:0.22.1)

install_python() {
    local version=$1 dir=.deps/py-iii-sdk-$1
    [ -f "$dir/.installed" ] && return 0
    rm -rf "$dir"
    python3 -m venv "$dir"
    local packages=("iii-sdk==$version")
    # From 0.25 the channel helpers live in their own package, pinned to the same version.
    case $version in 0.25.*) packages+=("iii-helpers==$version") ;; esac
    "$dir/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}"
    touch "$dir/.installed"
}

install_node() {
    local version=$1 dir=.deps/node-iii-sdk-$1
    [ -f "$dir/.installed" ] && return 0
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && echo '{"private": true}' > package.json \
        && npm install --silent --no-audit --no-fund "iii-sdk@$version")
    touch "$dir/.installed"
}

for entry in "${versions[@]}"; do
    case $entry in
        py:*) install_python "${entry#py:}" ;;
        node:*) install_node "${entry#node:}" ;;
        *) echo "install_sdks: unknown entry '$entry' (want py:VERSION or node:VERSION)" >&2; exit 2 ;;
    esac
done
