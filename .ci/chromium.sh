#!/usr/bin/env bash
# Installs Debian's Chromium and chromedriver for the browser tests (tests/src/browser.rs), plus a
# font so screenshots show text, unless both programs are already on PATH. Needs root (apt-get);
# reads no standard input.
#
#   bash .ci/chromium.sh
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "==> $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version | head -n1)"
    exit 0
fi
echo "==> Chromium or chromedriver not found; installing them with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q </dev/null
apt-get -y -q install --no-install-recommends chromium chromium-driver fonts-dejavu-core </dev/null
echo "==> $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version | head -n1)"
