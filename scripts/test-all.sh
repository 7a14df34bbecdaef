#!/usr/bin/env bash
# Runs every test of the crate: unit, property, conformance, HTTP and the
# real-server backend tests. Starts the services those need (Redis, a Redis
# Cluster, MariaDB, a Kafka-protocol broker) when they are not already
# running, and stops what it started. The first run on a machine installs
# the broker (tansu, from crates.io: about 10 minutes on 2 cores).
#
#   scripts/test-all.sh            # everything
#   scripts/test-all.sh redis      # extra args go to `cargo test` (a filter)
set -euo pipefail
cd "$(dirname "$0")/.."

# Under CI a backend test whose service is missing must fail, not skip.
export CI="${CI:-}"
scripts/install-promtool.sh  # checks GET /metrics in tests/metrics_endpoint.rs
scripts/install-image-tools.sh  # buildah, hadolint, PyYAML for tests/container_image.rs
# Fuzzes both servers against the OpenAPI document (tests/openapi_schemathesis.rs).
FLASHSALE_SCHEMATHESIS="$(scripts/install-schemathesis.sh)"
export FLASHSALE_SCHEMATHESIS

cmd=(cargo test --all-features --locked "$@")
# MariaDB for the MySQL backend's tests (innermost: started last, stopped first).
if [[ -x backends/mysql/with-mysql.sh ]]; then
  cmd=(backends/mysql/with-mysql.sh "${cmd[@]}")
fi
# The Kafka-protocol broker (tansu) for the Kafka sink, worker and e2e tests.
if [[ -x backends/kafka/with-kafka.sh ]]; then
  cmd=(backends/kafka/with-kafka.sh "${cmd[@]}")
fi
if [[ -x backends/redis/with-redis.sh ]]; then
  exec backends/redis/with-redis.sh "${cmd[@]}"
else
  exec "${cmd[@]}"
fi
