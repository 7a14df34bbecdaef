#!/usr/bin/env bash
# HTTP benchmark of POST /buy: each example server (memory backends, HS256
# JWT) against a bare handler of the same framework, in the same run, with
# wrk. Prints requests/s and p99 per server and the ratio real/bare.
#
#   scripts/bench-http.sh                 # 256 connections, 15 s per run
#   CONNECTIONS=64 DURATION=10s scripts/bench-http.sh
#
# Loopback only; every server started here is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS="${CONNECTIONS:-256}"
DURATION="${DURATION:-15s}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-3s}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

scripts/install-wrk.sh
cargo build --release --quiet --features axum,actix,jwt \
    --example axum_server --example actix_server --example http_bare
BIN="$CARGO_TARGET_DIR/release/examples"
LOGDIR="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

wait_for() { # url
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "server at $1 did not come up" >&2
    exit 1
}

run_wrk() { # label url token
    TOKEN="$3" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s scripts/wrk-buy.lua "$2" >/dev/null
    TOKEN="$3" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/wrk-buy.lua "$2" \
        >"$LOGDIR/$1.wrk"
    local result non2xx
    result=$(grep '^RESULT' "$LOGDIR/$1.wrk")
    non2xx=$(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$LOGDIR/$1.wrk" | grep -o '[0-9]*$' || echo 0)
    echo "$1 $result non2xx=$non2xx" | tee -a "$LOGDIR/summary"
}

for fw in axum actix; do
    # The real server: memory backends, HS256, no practical rate limit (one
    # token makes every request; the limiter is still consulted), and a sale
    # too big to sell out during the run.
    FLASHSALE_LISTEN=127.0.0.1:18080 FLASHSALE_RATE_LIMIT=1000/1ms RUST_LOG=warn \
        "$BIN/${fw}_server" >"$LOGDIR/$fw.out" 2>"$LOGDIR/$fw.err" &
    PIDS+=($!)
    wait_for http://127.0.0.1:18080/healthz
    buyer=$(sed -n '/^ buyer token (/{n;p}' "$LOGDIR/$fw.out")
    admin=$(sed -n '/^ admin token (/{n;p}' "$LOGDIR/$fw.out")
    curl -sf -X PUT http://127.0.0.1:18080/admin/products/bench \
        -H "Authorization: Bearer $admin" \
        -d '{"stock": 1000000000, "per_user_limit": 4294967295, "per_order_max": 10}' >/dev/null
    run_wrk "$fw-flashsale" http://127.0.0.1:18080/buy/bench "$buyer"
    curl -s http://127.0.0.1:18080/products/bench >"$LOGDIR/$fw.product"
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'

    FLASHSALE_LISTEN=127.0.0.1:18081 "$BIN/http_bare" "$fw" >"$LOGDIR/$fw-bare.out" 2>&1 &
    PIDS+=($!)
    sleep 0.5
    run_wrk "$fw-bare" http://127.0.0.1:18081/buy/bench "$buyer"
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
    echo "$fw stock after the run: $(cat "$LOGDIR/$fw.product")"
done

echo
echo "POST /buy, $CONNECTIONS connections, $THREADS wrk threads, $DURATION, $(nproc) cores"
printf '%-18s %10s %9s %9s %8s\n' server req/s p50_ms p99_ms non2xx
while read -r label _ rps p50 p99 _ _ non; do
    printf '%-18s %10s %9s %9s %8s\n' "$label" "${rps#rps=}" "${p50#p50_ms=}" "${p99#p99_ms=}" "${non#non2xx=}"
done <"$LOGDIR/summary"
for fw in axum actix; do
    real=$(awk -v l="$fw-flashsale" '$1==l {sub("rps=","",$3); print $3}' "$LOGDIR/summary")
    bare=$(awk -v l="$fw-bare" '$1==l {sub("rps=","",$3); print $3}' "$LOGDIR/summary")
    awk -v f="$fw" -v r="$real" -v b="$bare" 'BEGIN {printf "%s: flashsale/bare = %.2f\n", f, r/b}'
done
echo "(wrk output in $LOGDIR)"
