#!/usr/bin/env bash
# HTTP benchmark of POST /buy: each example server (memory backends, HS256
# JWT) against a bare handler of the same framework, in the same run, with
# wrk. Prints requests/s and p99 per server and the ratio real/bare.
# Then GET /products on Redis (the axum server, when a Redis answers on
# 127.0.0.1:6379) against the bare axum GET handler, with the Redis
# commands per second the page reads caused.
#
#   scripts/bench-http.sh                 # 256 connections, 15 s per run
#   CONNECTIONS=64 DURATION=10s scripts/bench-http.sh
#   GET_CONNECTIONS=64                    # connections of the GET pair
#   PAIRS=get scripts/bench-http.sh       # only the GET pair (default "buy get")
#
# Loopback only; every server started here is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS="${CONNECTIONS:-256}"
DURATION="${DURATION:-15s}"
THREADS="${THREADS:-2}"
PAIRS="${PAIRS:-buy get}"
WARMUP="${WARMUP:-3s}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

scripts/install-wrk.sh
cargo build --release --quiet --features axum,actix,jwt,redis \
    --example axum_server --example actix_server --example http_bare
BIN="$CARGO_TARGET_DIR/release/examples"
LOGDIR="$(mktemp -d)"
: >"$LOGDIR/summary"
: >"$LOGDIR/statuses"
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

# The server's CPU time (user, system; clock ticks) and context switches
# (voluntary, involuntary; all its threads), for per-request figures.
proc_counters() { # pid
    local ticks vol invol
    ticks=$(awk '{print $14, $15}' "/proc/$1/stat")
    vol=$(cat /proc/"$1"/task/*/status | awk '$1=="voluntary_ctxt_switches:" {s+=$2} END {print s}')
    invol=$(cat /proc/"$1"/task/*/status | awk '$1=="nonvoluntary_ctxt_switches:" {s+=$2} END {print s}')
    echo "$ticks $vol $invol"
}

run_wrk() { # label url token server-pid [wrk script]
    local script="${5:-scripts/wrk-buy.lua}"
    TOKEN="$3" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -s "$script" "$2" >/dev/null
    local before after
    before=$(proc_counters "$4")
    TOKEN="$3" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$2" \
        >"$LOGDIR/$1.wrk"
    after=$(proc_counters "$4")
    local result non2xx requests per_request
    result=$(grep '^RESULT' "$LOGDIR/$1.wrk")
    non2xx=$(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$LOGDIR/$1.wrk" | grep -o '[0-9]*$' || echo 0)
    requests=$(echo "$result" | grep -o 'requests=[0-9]*' | cut -d= -f2)
    per_request=$(echo "$before $after" | awk -v n="$requests" -v hz="$(getconf CLK_TCK)" '{
        printf "user_us=%.1f sys_us=%.1f vcsw=%.3f ivcsw=%.3f",
            ($5-$1)*1e6/hz/n, ($6-$2)*1e6/hz/n, ($7-$3)/n, ($8-$4)/n }')
    echo "$1 $result non2xx=$non2xx $per_request" | tee -a "$LOGDIR/summary"
}

buy_frameworks=""
[[ " $PAIRS " == *" buy "* ]] && buy_frameworks="axum actix"
for fw in $buy_frameworks; do
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
    run_wrk "$fw-flashsale" http://127.0.0.1:18080/buy/bench "$buyer" "${PIDS[-1]}"
    curl -s http://127.0.0.1:18080/products/bench >"$LOGDIR/$fw.product"
    # Which answers were not 2xx, by status, from the server's own counter
    # (warm-up included): wrk only counts them.
    statuses=$(curl -s http://127.0.0.1:18080/metrics |
        awk '/^flashsale_http_requests_total\{/ && /route="\/buy\/\{product_id\}"/ {
            match($0, /status="[0-9]+"/); st = substr($0, RSTART + 8, RLENGTH - 9); n[st] += $NF }
            END { for (st in n) printf "%s%s=%d", (c++ ? " " : ""), st, n[st] }')
    echo "$fw-flashsale POST /buy answers by status (warm-up included): ${statuses:-none counted}" \
        >>"$LOGDIR/statuses"
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'

    FLASHSALE_LISTEN=127.0.0.1:18081 "$BIN/http_bare" "$fw" >"$LOGDIR/$fw-bare.out" 2>&1 &
    PIDS+=($!)
    sleep 0.5
    run_wrk "$fw-bare" http://127.0.0.1:18081/buy/bench "$buyer" "${PIDS[-1]}"
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
    echo "$fw stock after the run: $(cat "$LOGDIR/$fw.product")"
done

# GET /products on Redis against the bare GET handler (axum).
GET_CONNECTIONS="${GET_CONNECTIONS:-64}"
redis_commands() {
    redis-cli -p 6379 info stats | awk -F: '/^total_commands_processed/ {print $2}' | tr -d '\r'
}
get_note="GET /products pair skipped: no Redis on 127.0.0.1:6379 (run this under backends/redis/with-redis.sh)"
if [[ " $PAIRS " != *" get "* ]]; then
    get_note="GET /products pair not asked for (PAIRS=$PAIRS)"
elif command -v redis-cli >/dev/null && redis-cli -p 6379 ping >/dev/null 2>&1; then
    prefix="bench-get-$$"
    FLASHSALE_LISTEN=127.0.0.1:18082 FLASHSALE_REDIS_URL=redis://127.0.0.1:6379 \
        FLASHSALE_REDIS_PREFIX="$prefix" RUST_LOG=warn \
        "$BIN/axum_server" >"$LOGDIR/get.out" 2>"$LOGDIR/get.err" &
    PIDS+=($!)
    wait_for http://127.0.0.1:18082/healthz
    admin=$(sed -n '/^ admin token (/{n;p}' "$LOGDIR/get.out")
    curl -sf -X PUT http://127.0.0.1:18082/admin/products/bench \
        -H "Authorization: Bearer $admin" \
        -d '{"stock": 1000000000, "per_user_limit": 4294967295, "per_order_max": 10}' >/dev/null
    before_cmds=$(redis_commands); before_t=$(date +%s.%N)
    CONNECTIONS=$GET_CONNECTIONS run_wrk axum-get-flashsale http://127.0.0.1:18082/products/bench "" \
        "${PIDS[-1]}" scripts/wrk-get.lua
    after_cmds=$(redis_commands); after_t=$(date +%s.%N)
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
    redis-cli -p 6379 --scan --pattern "*$prefix*" | xargs -r redis-cli -p 6379 del >/dev/null
    FLASHSALE_LISTEN=127.0.0.1:18083 "$BIN/http_bare" axum >"$LOGDIR/get-bare.out" 2>&1 &
    PIDS+=($!)
    sleep 0.5
    CONNECTIONS=$GET_CONNECTIONS run_wrk axum-get-bare http://127.0.0.1:18083/products/bench "" \
        "${PIDS[-1]}" scripts/wrk-get.lua
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
    get_note=$(awk -v c="$((after_cmds - before_cmds))" -v a="$after_t" -v b="$before_t" \
        'BEGIN {printf "Redis commands per second during the flashsale GET runs (warm-up included; the sweeper and relay too): %.1f", c/(a-b)}')
fi

echo
echo "POST /buy, $CONNECTIONS connections, $THREADS wrk threads, $DURATION, $(nproc) cores"
echo "(per request, in the server: CPU microseconds, voluntary and involuntary context switches)"
printf '%-18s %10s %9s %9s %8s %8s %8s %7s %7s\n' server req/s p50_ms p99_ms non2xx user_us sys_us vcsw ivcsw
while read -r label _ rps p50 p99 _ _ non user sys vcsw ivcsw; do
    printf '%-18s %10s %9s %9s %8s %8s %8s %7s %7s\n' "$label" "${rps#rps=}" "${p50#p50_ms=}" "${p99#p99_ms=}" \
        "${non#non2xx=}" "${user#user_us=}" "${sys#sys_us=}" "${vcsw#vcsw=}" "${ivcsw#ivcsw=}"
done < <(grep -v -- '-get-' "$LOGDIR/summary" || true)
for fw in $buy_frameworks; do
    real=$(awk -v l="$fw-flashsale" '$1==l {sub("rps=","",$3); print $3}' "$LOGDIR/summary")
    bare=$(awk -v l="$fw-bare" '$1==l {sub("rps=","",$3); print $3}' "$LOGDIR/summary")
    real99=$(awk -v l="$fw-flashsale" '$1==l {sub("p99_ms=","",$5); print $5}' "$LOGDIR/summary")
    bare99=$(awk -v l="$fw-bare" '$1==l {sub("p99_ms=","",$5); print $5}' "$LOGDIR/summary")
    awk -v f="$fw" -v r="$real" -v b="$bare" -v r99="$real99" -v b99="$bare99" \
        'BEGIN {printf "%s: flashsale/bare = %.2f req/s; p99 = %.1fx the bare handler'"'"'s\n", f, r/b, r99/b99}'
done
cat "$LOGDIR/statuses"
echo
echo "GET /products on Redis, $GET_CONNECTIONS connections"
printf '%-20s %10s %9s %9s %8s %8s %8s\n' server req/s p50_ms p99_ms non2xx user_us sys_us
while read -r label _ rps p50 p99 _ _ non user sys _ _; do
    printf '%-20s %10s %9s %9s %8s %8s %8s\n' "$label" "${rps#rps=}" "${p50#p50_ms=}" "${p99#p99_ms=}" \
        "${non#non2xx=}" "${user#user_us=}" "${sys#sys_us=}"
done < <(grep -- '-get-' "$LOGDIR/summary" || true)
real=$(awk '$1=="axum-get-flashsale" {sub("rps=","",$3); print $3}' "$LOGDIR/summary")
bare=$(awk '$1=="axum-get-bare" {sub("rps=","",$3); print $3}' "$LOGDIR/summary")
if [[ -n $real && -n $bare ]]; then
    awk -v r="$real" -v b="$bare" 'BEGIN {printf "axum GET /products: flashsale on Redis/bare = %.2f req/s\n", r/b}'
fi
echo "$get_note"
echo "(wrk output in $LOGDIR)"
