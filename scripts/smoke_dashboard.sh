#!/usr/bin/env bash
# Real-browser smoke test of the dashboard (not part of `make test`): start app.py headless on
# port 8599, screenshot every tab in headless Chromium, check that no Streamlit exception box
# and no server traceback appeared, stop the server.
#
#   scripts/smoke_dashboard.sh [OUT_DIR]     # default /tmp; writes dash.png, dash_<tab>.png
#   PORT=8599 CHROMIUM=/usr/bin/chromium scripts/smoke_dashboard.sh
#
# Chromium runs with the usual flags (--headless --no-sandbox --disable-gpu --disable-quic
# --window-size=1400,1800 …) but through the DevTools protocol (scripts/screenshot_page.py):
# `--screenshot --virtual-time-budget` fast-forwards virtual time while the page waits on its
# websocket and often shoots the loading skeleton. Then LOOK at the screenshots: the script
# checks that the page rendered, not that it looks right.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp}
mkdir -p "$OUT"
PORT=${PORT:-8599}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
URL="http://localhost:$PORT"
LOG=$(mktemp -t dashboard-log.XXXXXX)

.venv/bin/streamlit run app.py --server.headless true --server.fileWatcherType none --server.port "$PORT" \
    --browser.gatherUsageStats false >"$LOG" 2>&1 &
SERVER=$!
cleanup() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap cleanup EXIT

for _ in $(seq 1 60); do
    curl -fsS "$URL/_stcore/health" >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fsS "$URL/_stcore/health" >/dev/null || { echo "server did not start:"; cat "$LOG"; exit 1; }

shot() {  # shot FILE [TEXT TO CLICK]…   (QUERY: appended to the URL)
    local file=$1; shift
    local clicks=()
    for c in "$@"; do clicks+=(--click "$c"); done
    .venv/bin/python scripts/screenshot_page.py "$URL/${QUERY:-}" "$file" --chromium "$CHROMIUM" --size 1400x1800 \
        --wait "Recommended" --wait "No split meets" --wait "No design point meets" --wait "${WAIT:-Recommended}" ${TYPE:+--type "$TYPE"} \
        "${clicks[@]}" | tee "$file.log"
}
shot "$OUT/dash.png"
shot "$OUT/dash_tradeoff.png" "Accuracy and energy"
shot "$OUT/dash_cui.png" "Importance"
shot "$OUT/dash_compare.png" "Compare A/B" "Pin the current" "poisson"
# Design points: split × bottleneck ranked jointly, with the best split per bottleneck.
QUERY="?scenario=demo_joint.yaml" shot "$OUT/dash_joint.png"
shot "$OUT/dash_scenario.png" "Scenario" "Edited scenario, fully resolved"
QUERY="?scenario=infeasible_3g.yaml" shot "$OUT/dash_infeasible.png"
# A bottleneck: measured accuracy per split (the autoencoder trains on first use; cached after).
QUERY="?scenario=demo_autoencoder.yaml" shot "$OUT/dash_bottleneck.png" "Accuracy and energy"
# A broken pasted scenario must give a one-line error box, not a traceback.
QUERY="?scenario=Paste+YAML%E2%80%A6" WAIT="paste one" TYPE=$'name: bad\nmodel: {name: digits_cnn}\ndevice: rpi4\nserver: server_t4\nnetwork: lte\nworkload: {num_devices: 0}\n' \
    shot "$OUT/dash_error.png" "Use this YAML"
grep -q "error box: <pasted>: workload.num_devices" "$OUT/dash_error.png.log" || { echo "no error box for the bad paste"; exit 1; }
if grep -q "Traceback" "$LOG"; then echo "the server logged a traceback:"; cat "$LOG"; exit 1; fi
echo "server log: $LOG"
