#!/usr/bin/env bash
# Renders a disclosure report in headless Chromium (Debian's package) and
# writes a PNG, to look at what a privacy officer will send:
#   scripts/report-screenshot.sh [REPORT.html] [OUT.png]
# Default input: the golden report of internal/ledger.
set -euo pipefail
in=${1:-internal/ledger/testdata/report.golden.html}
out=${2:-report.png}
command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1200,1000 --screenshot="$out" "file://$(realpath "$in")" 2>/dev/null
echo "wrote $out"
