#!/usr/bin/env bash
# Soak test: the axum example server on Redis under the load test's mixed
# workload (buy, replay, confirm, cancel, restock) for SOAK_SECONDS, with
# the server's resident memory (VmRSS) sampled at the start, every
# SOAK_RSS_EVERY seconds and at the end. Fails when the load test fails
# (an unexpected answer or a failed invariant check) or the server dies.
#
#   scripts/soak.sh                          # 5 minutes, release build
#   SOAK_SECONDS=30 scripts/soak.sh          # a short one
#   SOAK_PROFILE=debug scripts/soak.sh       # debug build
#
# Settings (environment), with their defaults:
#   SOAK_SECONDS=300        how long the load test sends
#   SOAK_PROFILE=release    release or debug
#   SOAK_MIX=buy=70,replay=10,confirm=8,cancel=7,restock=5
#   SOAK_USERS=2000         virtual users (one token each)
#   SOAK_CONCURRENCY=64     requests in flight
#   SOAK_STOCK=5000         the soak sale's initial stock
#   SOAK_USER_LIMIT=100     its per-user cap
#   SOAK_HOLD_SECONDS=60    its hold period (holds not confirmed or cancelled
#                           by then expire: the sweeper is soaked too)
#   SOAK_RSS_EVERY=30       seconds between RSS samples
#   CARGO_TARGET_DIR=target
#   FLASHSALE_REDIS_URL     the Redis to use; when unset, the script runs
#                           itself under backends/redis/with-redis.sh, which
#                           finds one on 127.0.0.1:6379 or starts one
#
# The server listens on an ephemeral loopback port, keeps its keys under a
# fresh prefix (flashsale-soak:<id>, deleted at the end) and signs with the
# development JWT secret (FLASHSALE_JWT_SECRET is ignored here), so its
# banner's admin token can create the soak sale. Everything this script
# starts is stopped by PID at the end; logs stay in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${FLASHSALE_REDIS_URL:-}" ]]; then
  exec backends/redis/with-redis.sh scripts/soak.sh "$@"
fi

SOAK_SECONDS="${SOAK_SECONDS:-300}"
SOAK_PROFILE="${SOAK_PROFILE:-release}"
SOAK_MIX="${SOAK_MIX:-buy=70,replay=10,confirm=8,cancel=7,restock=5}"
SOAK_USERS="${SOAK_USERS:-2000}"
SOAK_CONCURRENCY="${SOAK_CONCURRENCY:-64}"
SOAK_STOCK="${SOAK_STOCK:-5000}"
SOAK_USER_LIMIT="${SOAK_USER_LIMIT:-100}"
SOAK_HOLD_SECONDS="${SOAK_HOLD_SECONDS:-60}"
SOAK_RSS_EVERY="${SOAK_RSS_EVERY:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

log() { echo "soak: $*" >&2; }
die() {
  log "$*"
  exit 1
}

case "$SOAK_PROFILE" in
  release) profile_args=(--release) ;;
  debug) profile_args=() ;;
  *) die "SOAK_PROFILE must be release or debug, not '$SOAK_PROFILE'" ;;
esac
[[ "$SOAK_SECONDS" =~ ^[0-9]+$ && "$SOAK_SECONDS" -gt 0 ]] || die "SOAK_SECONDS must be a whole number above 0"
[[ "$SOAK_RSS_EVERY" =~ ^[0-9]+$ && "$SOAK_RSS_EVERY" -gt 0 ]] || die "SOAK_RSS_EVERY must be a whole number above 0"

LOGDIR="$(mktemp -d -t flashsale-soak.XXXXXX)"
ID="$(date +%Y%m%d%H%M%S)-$$"
PREFIX="flashsale-soak:$ID"
PRODUCT="soak-$ID"
SERVER_PID=""
SAMPLER_PID=""
REDIS_URL="$FLASHSALE_REDIS_URL"
REDIS_CLI=(redis-cli -u "$REDIS_URL")

cleanup() {
  local status=$?
  set +e
  [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null
    for _ in $(seq 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  # The soak's keys: `<prefix>:...` and `{<prefix>:<product>}:...`.
  if command -v redis-cli >/dev/null && "${REDIS_CLI[@]}" ping >/dev/null 2>&1; then
    for pattern in "$PREFIX*" "{$PREFIX*"; do
      "${REDIS_CLI[@]}" --scan --pattern "$pattern" 2>/dev/null |
        xargs -r -n 500 "${REDIS_CLI[@]}" UNLINK >/dev/null 2>&1
    done
  fi
  log "logs in $LOGDIR"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build ----------------------------------------------------------------
log "building the axum server (redis) and the load test ($SOAK_PROFILE)"
cargo build "${profile_args[@]}" --locked --quiet --features redis \
  --example axum_server --example loadtest
BIN="$CARGO_TARGET_DIR/$SOAK_PROFILE/examples"

# --- Redis ----------------------------------------------------------------
redis-cli -u "$REDIS_URL" ping 2>/dev/null | grep -q PONG ||
  die "FLASHSALE_REDIS_URL=$REDIS_URL does not answer PING"
log "using FLASHSALE_REDIS_URL=$REDIS_URL"

# --- the server -----------------------------------------------------------
env -u FLASHSALE_JWT_SECRET -u FLASHSALE_DATABASE_URL -u FLASHSALE_KAFKA_BROKERS \
  FLASHSALE_LISTEN=127.0.0.1:0 FLASHSALE_REDIS_URL="$REDIS_URL" \
  FLASHSALE_REDIS_PREFIX="$PREFIX" RUST_LOG="${RUST_LOG:-warn}" \
  "$BIN/axum_server" >"$LOGDIR/server.out" 2>"$LOGDIR/server.err" &
SERVER_PID=$!
BASE=""
for _ in $(seq 600); do
  BASE=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$LOGDIR/server.out" | head -n1)
  [[ -n "$BASE" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$LOGDIR/server.err" >&2; die "the server exited at start"; }
  sleep 0.1
done
[[ -n "$BASE" ]] || die "the server did not say where it listens within 60 s"
ADMIN=$(sed -n '/^ admin token (/{n;p}' "$LOGDIR/server.out")
[[ -n "$ADMIN" ]] || die "no admin token in the server's banner"
log "server pid $SERVER_PID at $BASE (Redis $REDIS_URL, prefix $PREFIX)"

sale="{\"stock\": $SOAK_STOCK, \"per_user_limit\": $SOAK_USER_LIMIT, \"per_order_max\": 2, \"hold_seconds\": $SOAK_HOLD_SECONDS}"
curl -sf -X PUT "$BASE/admin/products/$PRODUCT" -H "Authorization: Bearer $ADMIN" \
  -H 'Content-Type: application/json' -d "$sale" >"$LOGDIR/sale.json" ||
  die "creating the soak sale failed"
log "sale $PRODUCT: $sale"

# --- RSS samples ----------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
sample() { # label
  local kib
  kib=$(rss_kib)
  [[ -n "$kib" ]] || return 1
  echo "$1 $kib" >>"$LOGDIR/rss"
  log "RSS $1: $(mib "$kib") MiB"
}
: >"$LOGDIR/rss"
sample start || die "cannot read /proc/$SERVER_PID/status"
(
  t=0
  while sleep "$SOAK_RSS_EVERY"; do
    t=$((t + SOAK_RSS_EVERY))
    sample "${t}s" || exit 0
  done
) &
SAMPLER_PID=$!

# --- the load -------------------------------------------------------------
log "load test: $SOAK_SECONDS s, mix $SOAK_MIX, $SOAK_USERS users, concurrency $SOAK_CONCURRENCY"
loadtest=(env -u FLASHSALE_JWT_SECRET "$BIN/loadtest" --url "$BASE" --product "$PRODUCT"
  --duration "$SOAK_SECONDS" --mix "$SOAK_MIX" --users "$SOAK_USERS"
  --concurrency "$SOAK_CONCURRENCY")
echo "${loadtest[*]}" >"$LOGDIR/command"
set +e
"${loadtest[@]}" | tee "$LOGDIR/loadtest.out"
lt_status=${PIPESTATUS[0]}
set -e
kill "$SAMPLER_PID" 2>/dev/null
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""

alive=1
kill -0 "$SERVER_PID" 2>/dev/null || alive=0
events=0
if ((alive)); then
  sample end
  peak=$(hwm_kib)
  events=$(curl -sf "$BASE/metrics" |
    awk '/^flashsale_relay_delivered_events_total/ {s += $NF} END {printf "%d", s}') || events=0
fi

# --- summary --------------------------------------------------------------
echo
echo "soak summary ($SOAK_SECONDS s, $SOAK_PROFILE build, $(nproc) cores, Redis $REDIS_URL)"
echo "  command: ${loadtest[*]:3}"
printf '  server RSS:'
while read -r label kib; do
  printf ' %s %s MiB;' "$label" "$(mib "$kib")"
done <"$LOGDIR/rss"
echo
if ((alive)); then
  start_kib=$(awk '$1 == "start" {print $2}' "$LOGDIR/rss")
  end_kib=$(awk '$1 == "end" {print $2}' "$LOGDIR/rss")
  echo "  RSS start $(mib "$start_kib") MiB, end $(mib "$end_kib") MiB, peak (VmHWM) $(mib "$peak") MiB"
  if ((events > 0)); then
    # Without FLASHSALE_KAFKA_BROKERS the server's order sink is the
    # in-memory MemoryOrderSink, bounded to the newest 10,000 events.
    echo "  order events delivered to the server's in-memory sink (it keeps the newest 10,000): $events;" \
      "RSS growth per event: $(awk -v a="$start_kib" -v b="$end_kib" -v n="$events" \
        'BEGIN {printf "%.0f", (b - a) * 1024 / n}') bytes"
    # One `placed` event per order, one more for each that ended.
    accounted=$(awk '/^orders / {gsub(",", ""); s = $2
      for (i = 3; i < NF; i++) if ($i == "confirmed" || $i == "cancelled" || $i == "expired") s += $(i + 1)
      print s}' "$LOGDIR/loadtest.out")
    echo "  the load test's orders account for ${accounted:-?} events (placed + confirmed +" \
      "cancelled + expired; the relay delivers at least once)"
  fi
else
  echo "  the server DIED during the soak (see $LOGDIR/server.err)"
fi
echo "  load test exit status: $lt_status"
grep -E '^(throughput|latency ms|orders|settle|result)' "$LOGDIR/loadtest.out" | sed 's/^/  /'

if ((!alive)); then
  exit 1
fi
exit "$lt_status"
