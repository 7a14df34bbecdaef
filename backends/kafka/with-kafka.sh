#!/usr/bin/env bash
# Runs a command with a Kafka-protocol broker available, then stops the
# broker if this script started it (on success, failure or interrupt), and
# exits with the command's status.
#
#   backends/kafka/with-kafka.sh cargo test --features kafka,test-util
#
# * Uses FLASHSALE_KAFKA_BROKERS if set (an existing cluster; topics must
#   exist). Otherwise starts `tansu` 0.6 (a Kafka-API broker from crates.io;
#   Apache Kafka is not installable on these machines) on a spare port of
#   127.0.0.1, with its SQLite storage engine in a fresh directory, so a
#   restart of that broker keeps every message.
# * Installs tansu on first use with `cargo install --locked` into
#   $FLASHSALE_TOOLS_DIR (default ~/.cache/flashsale); later runs reuse it.
#   A cold install compiles about 410 crates, unoptimised: about 10 minutes
#   on 2 cores.
# * Creates $FLASHSALE_KAFKA_TOPIC (default flashsale.orders) and its
#   dead-letter topic `<topic>.dlq` with $FLASHSALE_KAFKA_PARTITIONS (default
#   3) partitions, and exports for CMD:
#     FLASHSALE_KAFKA_BROKERS   127.0.0.1:<port>
#     FLASHSALE_TANSU_BIN       the broker binary (tests may start their own)
#     FLASHSALE_KAFKA_PYTHON    a Python with the `confluent-kafka` client, the
#                               outside reader of the end-to-end test (a venv
#                               in $FLASHSALE_TOOLS_DIR, made on first use)
# * Under CI=true a broker that cannot be installed or started is an error;
#   elsewhere too, since the Kafka tests would fail.
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

log() { echo "with-kafka: $*" >&2; }

TANSU_VERSION=0.6.0
TOOLS_DIR="${FLASHSALE_TOOLS_DIR:-$HOME/.cache/flashsale}"
# "-o0": built without optimisation (below); a differently built copy in
# the same cache is not mistaken for this one.
TANSU_ROOT="$TOOLS_DIR/tansu-$TANSU_VERSION-o0"
TANSU="$TANSU_ROOT/bin/tansu"
TOPIC="${FLASHSALE_KAFKA_TOPIC:-flashsale.orders}"
PARTITIONS="${FLASHSALE_KAFKA_PARTITIONS:-3}"

BROKER_PID=
DATA_DIR=

cleanup() {
  local status=$?
  set +e
  if [[ -n $BROKER_PID ]]; then
    kill "$BROKER_PID" 2>/dev/null
    for _ in $(seq 50); do
      kill -0 "$BROKER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
    log "stopped the tansu broker it had started"
  fi
  if [[ -n $DATA_DIR ]]; then
    if [[ $status -ne 0 && -s $DATA_DIR/broker.log ]]; then
      log "last lines of the broker's log:"
      tail -n 20 "$DATA_DIR/broker.log" >&2
    fi
    rm -rf "$DATA_DIR"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

install_tansu() {
  [[ -x $TANSU ]] && return 0
  mkdir -p "$TOOLS_DIR"
  # One install at a time, even when several scripts start at once.
  exec 9>"$TOOLS_DIR/.tansu-install.lock"
  flock 9
  if [[ ! -x $TANSU ]]; then
    log "installing tansu $TANSU_VERSION into $TANSU_ROOT (first use only;"
    log "  about 10 minutes on 2 cores; log: $TOOLS_DIR/tansu-install.log)"
    local started=$SECONDS
    # A test broker needs no optimisation: at opt-level 0 the install takes
    # 9 minutes of CPU instead of 20 to 36, and the Kafka tests, end to end
    # included, still pass (only slower: e2e_kafka 22 s instead of 12 s).
    # cargo's profile variables apply to `cargo install` too.
    if ! CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=0 \
        cargo install tansu --version "$TANSU_VERSION" --locked \
        --no-default-features --features libsql \
        --root "$TANSU_ROOT" >"$TOOLS_DIR/tansu-install.log" 2>&1; then
      tail -n 30 "$TOOLS_DIR/tansu-install.log" >&2
      log "could not install tansu; see $TOOLS_DIR/tansu-install.log"
      return 1
    fi
    log "installed tansu in $((SECONDS - started)) s"
  fi
  flock -u 9
}

CONFLUENT_KAFKA_VERSION=2.16.1
PY_VENV="$TOOLS_DIR/py-confluent-kafka-$CONFLUENT_KAFKA_VERSION"

ensure_python_client() {
  if [[ ! -x $PY_VENV/bin/python ]] || ! "$PY_VENV/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
    log "installing the Python confluent-kafka $CONFLUENT_KAFKA_VERSION client into $PY_VENV"
    rm -rf "$PY_VENV"
    python3 -m venv "$PY_VENV" &&
      "$PY_VENV/bin/pip" install -q --disable-pip-version-check \
        "confluent-kafka==$CONFLUENT_KAFKA_VERSION" >&2 || return 1
  fi
  export FLASHSALE_KAFKA_PYTHON="$PY_VENV/bin/python"
}

spare_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_broker() {
  DATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/flashsale-kafka.XXXXXX")
  local port
  port=$(spare_port)
  log "starting tansu on 127.0.0.1:$port (storage: $DATA_DIR/tansu.db)"
  # tansu reads the path of sqlite://<path> relative to its working
  # directory (an absolute path loses its leading slash): run it in DATA_DIR.
  (cd "$DATA_DIR" && exec "$TANSU" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "sqlite://tansu.db" \
    >"$DATA_DIR/broker.log" 2>&1) &
  BROKER_PID=$!
  for _ in $(seq 300); do
    if port_answers "$port"; then
      export FLASHSALE_KAFKA_BROKERS="127.0.0.1:$port"
      return 0
    fi
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "tansu did not answer on 127.0.0.1:$port within 30 s"
  return 1
}

create_topic() { # name
  local out
  if ! out=$("$TANSU" topic create --broker "tcp://$FLASHSALE_KAFKA_BROKERS" \
      --partitions "$PARTITIONS" "$1" 2>&1); then
    log "could not create topic $1: $out"
    return 1
  fi
}

if [[ -n "${FLASHSALE_KAFKA_BROKERS:-}" ]]; then
  log "using FLASHSALE_KAFKA_BROKERS=$FLASHSALE_KAFKA_BROKERS"
else
  if ! install_tansu || ! start_broker; then
    log "no Kafka-protocol broker could be started"
    exit 1
  fi
  create_topic "$TOPIC"
  create_topic "$TOPIC.dlq"
  log "topics $TOPIC and $TOPIC.dlq ($PARTITIONS partitions each) are ready"
fi
if [[ -x $TANSU ]]; then
  export FLASHSALE_TANSU_BIN="$TANSU"
fi
if ! ensure_python_client; then
  log "could not install the Python confluent-kafka client (PyPI)"
  exit 1
fi

# --- the command --------------------------------------------------------
set +e
"$@"
status=$?
set -e
exit "$status"
