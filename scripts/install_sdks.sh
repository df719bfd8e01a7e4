#!/usr/bin/env bash
# Installs the official iii SDKs that tests/conformance drives, each into its own cached
# folder under .deps/:
#   .deps/py-iii-sdk-VERSION/    a venv made with this machine's python3 and plain pip
#                                (0.25.x also gets iii-helpers of the same version)
#   .deps/node-iii-sdk-VERSION/  a private npm project with iii-sdk@VERSION in node_modules
# A folder is finished when its stamp file .installed names exactly what was asked for; a
# second run with the same versions does nothing. Any failure stops the script with a
# message and a non-zero exit, and the half-made folder is removed.
#
# Usage:
#   scripts/install_sdks.sh                                  # every version the suite uses
#   scripts/install_sdks.sh --python 0.25.0 --node 0.22.1    # only these
#   scripts/install_sdks.sh --python 0.4.1 0.11.6 --node 0.3.0
#   scripts/install_sdks.sh py:0.25.0 node:0.22.1            # the same, short form
set -euo pipefail
cd "$(dirname "$0")/.."

# Labels (spec §0): P4 P11 P25 = Python 0.4.1 0.11.6 0.25.0; N3 N11 N22 = npm 0.3.0 0.11.6 0.22.1.
# tests/conformance/harness.py (SDKS) names the same versions.
DEFAULT_PYTHON=(0.4.1 0.11.6 0.25.0)
DEFAULT_NODE=(0.3.0 0.11.6 0.22.1)

die() {
    echo "install_sdks: $*" >&2
    exit 1
}

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
}

python_versions=()
node_versions=()
family=""
for arg in "$@"; do
    case $arg in
        -h | --help) usage; exit 0 ;;
        --python) family=py ;;
        --node) family=node ;;
        py:*) python_versions+=("${arg#py:}") ;;
        node:*) node_versions+=("${arg#node:}") ;;
        -*) usage >&2; exit 2 ;;
        *)
            case $family in
                py) python_versions+=("$arg") ;;
                node) node_versions+=("$arg") ;;
                *) echo "install_sdks: '$arg': say --python or --node first" >&2; exit 2 ;;
            esac
            ;;
    esac
done
if [ ${#python_versions[@]} -eq 0 ] && [ ${#node_versions[@]} -eq 0 ]; then
    python_versions=("${DEFAULT_PYTHON[@]}")
    node_versions=("${DEFAULT_NODE[@]}")
fi
for version in "${python_versions[@]}" "${node_versions[@]}"; do
    [[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-.+][0-9A-Za-z.-]+)?$ ]] \
        || die "'$version' is not a version number"
done

mkdir -p .deps
# One install at a time: two test runs starting together would race on the same folder.
if command -v flock > /dev/null; then
    exec 9> .deps/.install.lock
    flock 9
fi

current=""
cleanup_on_error() {
    local code=$?
    if [ $code -ne 0 ] && [ -n "$current" ]; then
        rm -rf "$current"
        echo "install_sdks: FAILED (exit $code); removed the unfinished $current" >&2
    fi
}
trap cleanup_on_error EXIT

# A finished folder holds exactly the stamp text. A folder stamped by an earlier version of
# this script (an empty stamp) is checked in place and restamped rather than reinstalled.
is_installed() { # folder, expected stamp text, check command...
    local dir=$1 stamp=$2
    shift 2
    [ -f "$dir/.installed" ] || return 1
    [ "$(cat "$dir/.installed")" = "$stamp" ] && return 0
    [ -s "$dir/.installed" ] && return 1
    "$@" 2> /dev/null || return 1
    echo "$stamp" > "$dir/.installed"
}

# The import package is always `iii`: it must import and be the version asked for.
check_python() { # folder, version
    "$1/bin/python" -c '
import sys
from importlib.metadata import version

import iii

installed = version("iii-sdk")
if installed != sys.argv[1]:
    sys.exit(f"iii-sdk {installed} installed, {sys.argv[1]} wanted")
' "$2"
}

# Resolved the way tests/conformance/workers/node_worker.mjs does, and the version asked for.
check_node() { # folder, version
    (cd "$1" && node -e '
        const { createRequire } = require("node:module")
        const fs = require("node:fs")
        const path = require("node:path")
        createRequire(path.resolve("package.json"))("iii-sdk")
        const found = JSON.parse(fs.readFileSync("node_modules/iii-sdk/package.json")).version
        if (found !== process.argv[1]) {
            console.error(`iii-sdk ${found} installed, ${process.argv[1]} wanted`)
            process.exit(1)
        }
    ' "$2")
}

install_python() {
    local version=$1 dir=.deps/py-iii-sdk-$1
    local packages=("iii-sdk==$version")
    # From 0.25 the channel and observability helpers live in their own package, same version.
    case $version in 0.25.*) packages+=("iii-helpers==$version") ;; esac
    local stamp="python ${packages[*]}"
    is_installed "$dir" "$stamp" check_python "$dir" "$version" && return 0
    command -v python3 > /dev/null || die "python3 is not on PATH"
    echo "install_sdks: ${packages[*]} -> $dir" >&2
    current=$dir
    rm -rf "$dir"
    python3 -m venv "$dir" || die "python3 -m venv failed (is the venv module installed?)"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "${packages[@]}" || die "pip could not install ${packages[*]}"
    check_python "$dir" "$version" || die "iii-sdk $version installed but does not import"
    echo "$stamp" > "$dir/.installed"
    current=""
}

install_node() {
    local version=$1 dir=.deps/node-iii-sdk-$1
    local stamp="node iii-sdk@$version"
    is_installed "$dir" "$stamp" check_node "$dir" "$version" && return 0
    command -v node > /dev/null || die "node is not on PATH"
    command -v npm > /dev/null || die "npm is not on PATH"
    echo "install_sdks: iii-sdk@$version -> $dir" >&2
    current=$dir
    rm -rf "$dir"
    mkdir -p "$dir"
    echo '{"name": "iii-sdk-conformance-deps", "private": true}' > "$dir/package.json"
    (cd "$dir" && npm install --no-audit --no-fund --save-exact --loglevel=error "iii-sdk@$version") \
        || die "npm could not install iii-sdk@$version"
    check_node "$dir" "$version" || die "iii-sdk@$version installed but does not load"
    echo "$stamp" > "$dir/.installed"
    current=""
}

for version in "${python_versions[@]}"; do install_python "$version"; done
for version in "${node_versions[@]}"; do install_node "$version"; done
