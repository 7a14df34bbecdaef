-- flashsale MySQL/MariaDB stock store: sales, per-buyer counts,
-- reservations, replay claims and the outbox of order events.
--
-- `{prefix}` is replaced by the store's table prefix before this runs
-- (MySqlOptions::table_prefix), so several stores can share one database.
-- Statements are separated by a `;` at the end of a line. Times are
-- milliseconds since the Unix epoch. Every text column that is compared
-- uses a binary collation: ids are case-sensitive, as in the other stores.

-- One row per sale: its terms and its live levels (the hot row of a flash
-- sale; `reserve` touches it last).
CREATE TABLE IF NOT EXISTS {prefix}sales (
  product_id     VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  total          BIGINT UNSIGNED NOT NULL,
  available      BIGINT UNSIGNED NOT NULL,
  held           BIGINT UNSIGNED NOT NULL DEFAULT 0,
  committed      BIGINT UNSIGNED NOT NULL DEFAULT 0,
  per_user_limit BIGINT UNSIGNED NOT NULL,
  per_order_max  BIGINT UNSIGNED NOT NULL,
  starts_at      BIGINT UNSIGNED NULL,
  ends_at        BIGINT UNSIGNED NULL,
  -- The hold in nanoseconds, exactly as the sale was built (NULL: none).
  hold_ns        BIGINT UNSIGNED NULL,
  PRIMARY KEY (product_id)
) ENGINE = InnoDB;

-- Units held + sold per (product, buyer): the per-user cap is a guarded
-- update of this row.
CREATE TABLE IF NOT EXISTS {prefix}user_units (
  product_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  user_id    VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  units      BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (product_id, user_id)
) ENGINE = InnoDB;

-- One row per reservation (and per void tombstone), by order id.
CREATE TABLE IF NOT EXISTS {prefix}reservations (
  order_id        BINARY(16) NOT NULL,
  product_id      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  user_id         VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  quantity        INT UNSIGNED NOT NULL,
  -- The request's key, as recorded (kept after a void).
  idempotency_key VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  -- The key while it names this reservation: the unique key below makes
  -- one key yield at most one reservation; a void frees it (NULL).
  idem_slot       VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  created_at      BIGINT UNSIGNED NOT NULL,
  expires_at      BIGINT UNSIGNED NOT NULL,
  awaits_confirmation BOOLEAN NOT NULL,
  -- held | committed | cancelled | expired | voided
  state           VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  -- The order's own request asked for a void while a replay held it.
  void_waiting    BOOLEAN NOT NULL DEFAULT FALSE,
  PRIMARY KEY (order_id),
  UNIQUE KEY idem (product_id, user_id, idem_slot),
  -- The sweeper: held reservations by expiry.
  KEY sweep (state, expires_at)
) ENGINE = InnoDB;

-- Replays (same key, same request) that were answered with an order: the
-- order stands until each of them has voided too.
CREATE TABLE IF NOT EXISTS {prefix}replays (
  order_id  BINARY(16) NOT NULL,
  replay_id BINARY(16) NOT NULL,
  PRIMARY KEY (order_id, replay_id)
) ENGINE = InnoDB;

-- Order events not yet acknowledged by a relay. `visible_at`: claimable
-- from this time on (a claim's lease pushes it forward).
CREATE TABLE IF NOT EXISTS {prefix}outbox (
  order_id   BINARY(16) NOT NULL,
  seq        SMALLINT UNSIGNED NOT NULL,
  product_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  visible_at BIGINT UNSIGNED NOT NULL,
  -- The event as the sink receives it (JSON, docs/orders.md).
  payload    TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  PRIMARY KEY (order_id, seq),
  KEY due (visible_at)
) ENGINE = InnoDB;
