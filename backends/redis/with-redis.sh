#!/usr/bin/env bash
# Runs a command with a Redis and a Redis Cluster available, then tears down
# whatever this script started (on success, failure or interrupt) and exits
# with the command's status.
#
#   backends/redis/with-redis.sh cargo test --features redis,test-util
#
# * Redis: uses FLASHSALE_REDIS_URL if set, else 127.0.0.1:6379 if it
#   answers; otherwise starts a throwaway redis-server there (installing the
#   Debian package redis-server if the binary is missing).
# * Cluster: uses FLASHSALE_REDIS_CLUSTER_URLS if set; otherwise starts three
#   masters (redis-server --cluster-enabled yes) on free loopback ports from
#   7101 up, data in a temp dir, joins them with `redis-cli --cluster create`
#   and waits for `cluster_state:ok`.
# * Exports FLASHSALE_REDIS_URL and FLASHSALE_REDIS_CLUSTER_URLS for CMD.
# * Afterwards deletes the test keys (prefix flashsale-test:) it finds on the
#   standalone Redis (only if no other run of this script is in flight:
#   a shared lock on $TMPDIR/flashsale-with-redis.lock), stops every process
#   it started (by PID), removes its temp dir.
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

log() { echo "with-redis: $*" >&2; }

WORK=$(mktemp -d -t flashsale-redis.XXXXXX)
PIDS=()

# Runs at once (two test commands in two shells) share the standalone
# server's test keys: each holds this lock shared, and deletes the keys at
# its end only when it is the one run holding it.
exec {LOCK_FD}>>"${TMPDIR:-/tmp}/flashsale-with-redis.lock"
flock -s "$LOCK_FD"

cleanup() {
  local status=$?
  set +e
  if [[ -n "${STANDALONE_PORT:-}" ]] && command -v redis-cli >/dev/null &&
    flock -n -x "$LOCK_FD"; then
    for pattern in 'flashsale-test:*' '{flashsale-test:*'; do
      redis-cli -p "$STANDALONE_PORT" --scan --pattern "$pattern" 2>/dev/null |
        xargs -r -n 500 redis-cli -p "$STANDALONE_PORT" DEL >/dev/null 2>&1
    done
  fi
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    # Give each a moment to exit, then insist.
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
  if ((${#PIDS[@]})); then
    log "stopped ${#PIDS[@]} redis-server process(es) it had started"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

answers() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }

wait_for() {
  local port=$1
  for _ in $(seq 100); do
    answers "$port" && return 0
    sleep 0.1
  done
  log "redis-server on port $port did not answer"
  return 1
}

ensure_binaries() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    return
  fi
  log "redis-server not found; installing the Debian package"
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  # The package may start a system service; that one is not ours to stop,
  # and is welcome as the standalone server.
}

start_server() { # port dir [extra args...]
  local port=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --daemonize no --save '' \
    --appendonly no --dir "$dir" --logfile "$dir/redis.log" "$@" &
  PIDS+=($!)
  wait_for "$port"
}

ensure_binaries

# --- standalone ---------------------------------------------------------
if [[ -n "${FLASHSALE_REDIS_URL:-}" ]]; then
  log "using FLASHSALE_REDIS_URL=$FLASHSALE_REDIS_URL"
else
  STANDALONE_PORT=6379
  if answers 6379; then
    log "using the Redis already answering on 127.0.0.1:6379"
  else
    if port_busy 6379; then
      log "port 6379 is taken by something that is not Redis"
      exit 1
    fi
    log "starting redis-server on 127.0.0.1:6379"
    start_server 6379 "$WORK/standalone"
  fi
  export FLASHSALE_REDIS_URL=redis://127.0.0.1:6379
fi

# --- cluster ------------------------------------------------------------
if [[ -n "${FLASHSALE_REDIS_CLUSTER_URLS:-}" ]]; then
  log "using FLASHSALE_REDIS_CLUSTER_URLS=$FLASHSALE_REDIS_CLUSTER_URLS"
else
  ports=()
  candidate=7101
  while ((${#ports[@]} < 3)); do
    if ((candidate > 7999)); then
      log "no free ports for the cluster between 7101 and 7999"
      exit 1
    fi
    # The cluster bus listens on port + 10000.
    if ! port_busy "$candidate" && ! port_busy $((candidate + 10000)); then
      ports+=("$candidate")
    fi
    candidate=$((candidate + 1))
  done
  log "starting a 3-master Redis Cluster on ports ${ports[*]}"
  nodes=()
  urls=()
  for p in "${ports[@]}"; do
    start_server "$p" "$WORK/cluster-$p" --cluster-enabled yes \
      --cluster-config-file "nodes-$p.conf" --cluster-node-timeout 5000
    nodes+=("127.0.0.1:$p")
    urls+=("redis://127.0.0.1:$p")
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1 || {
    cat "$WORK/cluster-create.log" >&2
    exit 1
  }
  for p in "${ports[@]}"; do
    ok=
    for _ in $(seq 100); do
      if redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
        ok=1
        break
      fi
      sleep 0.1
    done
    if [[ -z $ok ]]; then
      log "the cluster node on port $p never reported cluster_state:ok"
      exit 1
    fi
  done
  FLASHSALE_REDIS_CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")
  export FLASHSALE_REDIS_CLUSTER_URLS
  log "cluster ok: $FLASHSALE_REDIS_CLUSTER_URLS"
fi

# --- the command --------------------------------------------------------
set +e
"$@"
status=$?
set -e
exit "$status"
