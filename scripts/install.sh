#!/bin/sh
# Install telebridge and what it needs on Debian 12, as root.
#   sh scripts/install.sh          the gateway itself, in ./.venv
#   sh scripts/install.sh --test   also every real peer the test suite drives
# Every dependency is named here or in setup.py; nothing else is assumed.
set -eu
cd "$(dirname "$0")/.."

mode=run
[ "${1:-}" = "--test" ] && mode=test

export DEBIAN_FRONTEND=noninteractive
# libopus0: the Opus codec that telebridge/media/opus.py loads at run time.
apt_packages="python3 python3-venv python3-pip ca-certificates libopus0"
if [ "$mode" = test ]; then
    # Real peers for the end-to-end tests (see tests/e2e/).
    apt_packages="$apt_packages $(grep -v '^#' scripts/test-packages.txt | tr '\n' ' ')"
fi
missing=""
for pkg in $apt_packages; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# npm (for the JsSIP test client) is its own package with Debian's nodejs
# but comes inside nodejs from NodeSource, which conflicts with Debian's npm.
if [ "$mode" = test ] && ! command -v npm >/dev/null; then
    apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$mode" = test ]; then
    .venv/bin/python -m pip install -q -e ".[test]"
    # JsSIP and esbuild for tests/e2e/test_jssip.py, as package-lock.json
    # pins them; installed here because the tests run without internet.
    (cd tests/e2e/jssip && npm ci --no-audit --no-fund --loglevel=error)
else
    .venv/bin/python -m pip install -q .
fi
