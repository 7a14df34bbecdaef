#!/usr/bin/env bash
# Runs a command with a MySQL-protocol server (MariaDB) available, then
# drops the test tables and stops whatever this script started (on success,
# failure or interrupt), and exits with the command's status.
#
#   backends/mysql/with-mysql.sh cargo test --features mysql,test-util
#
# * Uses FLASHSALE_DATABASE_URL if set; else MariaDB on 127.0.0.1:3306
#   (user root, empty password, database `test`) if it answers; otherwise
#   starts the system's mariadbd with
#   `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`
#   (installing the Debian package mariadb-server if the binary is missing)
#   and waits for it. Under CI=true a server that cannot be reached or
#   started is an error; elsewhere too, since the MySQL tests would fail.
# * Makes sure the database `test` exists, and exports
#   FLASHSALE_DATABASE_URL for CMD.
# * Afterwards drops every table whose name starts with `fst_` (the test
#   prefix) and stops mariadbd if, and only if, this script started it.
#   Runs at once (two test commands in two shells) share those tables: each
#   holds a shared lock on $TMPDIR/flashsale-with-mysql.lock, and drops the
#   tables, at its start or its end, only when it is the one run holding it.
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

log() { echo "with-mysql: $*" >&2; }

STARTED=
PIDFILE=/run/mysqld/flashsale-with-mysql.pid

client() { # args...: the mariadb client on 127.0.0.1:3306 as root
  mariadb --protocol=tcp -h 127.0.0.1 -P 3306 -u root --connect-timeout=2 "$@"
}

answers() { client -N -e 'SELECT 1' >/dev/null 2>&1; }

drop_test_tables() {
  local tables
  tables=$(client -N -e "SELECT table_name FROM information_schema.tables \
      WHERE table_schema = 'test' AND table_name LIKE 'fst\\_%'" 2>/dev/null) || return 0
  [[ -z $tables ]] && return 0
  local sql="SET FOREIGN_KEY_CHECKS = 0;"
  while read -r t; do
    [[ -n $t ]] && sql+=" DROP TABLE IF EXISTS test.\`$t\`;"
  done <<<"$tables"
  # Through stdin: thousands of names overflow one command-line argument.
  printf '%s\n' "$sql" | client >/dev/null 2>&1 || true
}

# The lock every run holds shared; `alone` upgrades it when no other run
# holds it.
exec {LOCK_FD}>>"${TMPDIR:-/tmp}/flashsale-with-mysql.lock"
alone() { flock -n -x "$LOCK_FD"; }

cleanup() {
  local status=$?
  set +e
  if [[ -z ${FLASHSALE_DATABASE_URL_GIVEN:-} ]] && alone; then
    drop_test_tables
  fi
  if [[ -n $STARTED ]]; then
    start-stop-daemon --stop --quiet --pidfile "$PIDFILE" --retry TERM/30/KILL/5 \
      --exec /usr/sbin/mariadbd >/dev/null 2>&1
    rm -f "$PIDFILE"
    log "stopped the mariadbd it had started"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_binaries() {
  if [[ -x /usr/sbin/mariadbd ]] && command -v mariadb >/dev/null; then
    return
  fi
  log "mariadbd not found; installing the Debian package mariadb-server"
  local sudo=
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
}

start_server() {
  local sudo=
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo mkdir -p /run/mysqld
  $sudo chown mysql:mysql /run/mysqld 2>/dev/null || true
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    log "initialising the data directory"
    $sudo mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  log "starting mariadbd on 127.0.0.1:3306"
  $sudo start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$PIDFILE" \
    --chuid mysql --exec /usr/sbin/mariadbd -- --bind-address=127.0.0.1 --port=3306 \
    {LOCK_FD}>&-
  STARTED=1
  for _ in $(seq 300); do
    answers && return 0
    # A fresh Debian install lets root in through the socket only: allow
    # root@localhost with the empty password over TCP too (test setup).
    if mariadb -u root -e 'SELECT 1' >/dev/null 2>&1; then
      mariadb -u root -e "ALTER USER root@localhost IDENTIFIED VIA \
        mysql_native_password USING PASSWORD('') OR unix_socket" >/dev/null 2>&1 || true
    fi
    sleep 0.1
  done
  log "mariadbd did not answer on 127.0.0.1:3306 within 30 s"
  return 1
}

if [[ -n "${FLASHSALE_DATABASE_URL:-}" ]]; then
  FLASHSALE_DATABASE_URL_GIVEN=1
  log "using FLASHSALE_DATABASE_URL=$FLASHSALE_DATABASE_URL"
else
  ensure_binaries
  if answers; then
    log "using the MariaDB already answering on 127.0.0.1:3306"
  else
    if ! start_server; then
      log "no MySQL-protocol server on 127.0.0.1:3306 and none could be started"
      exit 1
    fi
  fi
  client -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null
  if alone; then
    drop_test_tables
  fi
  flock -s "$LOCK_FD"
  export FLASHSALE_DATABASE_URL=mysql://root@127.0.0.1:3306/test
fi

# --- the command --------------------------------------------------------
set +e
"$@"
status=$?
set -e
exit "$status"
