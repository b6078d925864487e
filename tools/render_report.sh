#!/usr/bin/env bash
# Renders a `vlq quantize --report` / `vlq eval --report` HTML page to a PNG with headless Chromium
# (dev-time only; Debian: `sudo apt-get install chromium`, not part of scripts/setup).
#   tools/render_report.sh REPORT.html OUT.png [WIDTH [HEIGHT]]
# The page is self-contained (inline SVG, no scripts or external assets), so no network is needed.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH [HEIGHT]]" >&2
  exit 64
fi
in=$(realpath "$1")
out=$(realpath -m "$2")
width=${3:-1024}
height=${4:-}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "$0: chromium not found (Debian: sudo apt-get install chromium)" >&2
  exit 69
fi
if [ -z "$height" ]; then
  # tall enough for the whole page: ~14 px per chart row (lines with <rect) plus the headings and tables
  rows=$(grep -o '<rect' "$in" | wc -l)
  tables=$(grep -o '<tr>' "$in" | wc -l)
  height=$(( 420 + rows * 14 + tables * 22 + 7 * 100 ))
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size="${width},${height}" --screenshot="$out" "file://$in" >/dev/null 2>&1
test -s "$out"
echo "$out (${width}x${height})"
