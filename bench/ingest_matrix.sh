#!/usr/bin/env bash
# The ingest benchmark matrix behind docs/performance.md: vtest.avi re-encoded to H.264
# (25 fps, a keyframe every second) at 640x360 and 1280x720, keyframes-only vs all frames,
# engine vs a bare PyAV loop measured in the same run. One JSON line per configuration.
#
#   bench/ingest_matrix.sh [SECONDS]      (default 30 s per variant; about 5 minutes in all)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
feedtag=.venv/bin/feedtag
# feeds chosen so that each run loads well under the machine's cores (live pacing must hold)
for config in "640x360 keyframes 100" "1280x720 keyframes 50" "640x360 all 20" "1280x720 all 8"; do
  read -r size mode feeds <<<"$config"
  "$feedtag" bench ingest --size "$size" --mode "$mode" --feeds "$feeds" --seconds "$seconds" --json
done
