#!/usr/bin/env bash
# TossIt's S3 endpoint, then OpenStack Swift's, through the same client in one
# session: ../shared/peers/run_matrix.sh (boto3; cases a, b, c; REPEAT rounds)
# against a fresh `tossit up` cluster of this checkout (brain + 3 nodes, R=3,
# under a temporary folder), then against Swift's SAIO (swift/setup.sh). Appends
# one JSON line per run to OUT; the servers' CPU and peak RSS come from
# peak_rss.py through the PID files. Stops both clusters when done.
#
#   bash bench/s3_vs_swift.sh [OUT]     # default bench/results/s3-vs-swift.jsonl
#   REPEAT=1 CASES="a c" bash bench/s3_vs_swift.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/peers}
OUT=$(realpath -m "${1:-$ROOT/bench/results/s3-vs-swift.jsonl}")
export REPEAT=${REPEAT:-2} CASES=${CASES:-a b c}
PORT=${PORT:-18000} S3_PORT=${S3_PORT:-19000} NODE_PORT=${NODE_PORT:-18081}
WORK=$(mktemp -d /tmp/tossit-s3-vs-swift.XXXXXX)
mkdir -p "$WORK/pids"

stop_tossit() { pkill -INT -f "tossit up --data-dir $WORK/data" && sleep 8; }
trap 'stop_tossit; rm -rf "$WORK"' EXIT

cd "$ROOT"
.venv/bin/tossit up --data-dir "$WORK/data" --port "$PORT" --node-port "$NODE_PORT" \
    --s3-port "$S3_PORT" > "$WORK/up.log" 2>&1 &
for _ in $(seq 1 90); do grep -q "S3 API" "$WORK/up.log" 2>/dev/null && break; sleep 1; done
grep -q "S3 API" "$WORK/up.log" || { cat "$WORK/up.log"; echo "the cluster did not start"; exit 1; }
sleep 3  # the nodes' first heartbeats
for p in $(pgrep -f "tossit (brain|node) .*$WORK/data"); do echo "$p" > "$WORK/pids/$p.pid"; done
key=$(curl -sf -X POST -H "Authorization: Bearer $(cat "$WORK/data/brain/admin.key")" \
    -H 'content-type: application/json' -d '{"name": "s3 bench", "role": "readwrite"}' \
    "http://127.0.0.1:$PORT/api/keys") || { echo "could not make a key"; exit 1; }
field() { .venv/bin/python -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$key" "$1"; }

PYTHON=$ROOT/.venv/bin/python NAME=tossit ENDPOINT=http://127.0.0.1:$S3_PORT \
    ACCESS_KEY=$(field id) SECRET_KEY=$(field secret) PID_DIR=$WORK/pids OUT=$OUT \
    bash "$PEERS/run_matrix.sh"
stop_tossit

cd "$PEERS" && bash swift/setup.sh > "$WORK/swift-setup.log" 2>&1 \
    || { tail -20 "$WORK/swift-setup.log"; echo "Swift did not start"; exit 1; }
PYTHON=$ROOT/.venv/bin/python NAME=swift OUT=$OUT bash run_matrix.sh
bash swift/stop.sh
echo "results: $OUT"
