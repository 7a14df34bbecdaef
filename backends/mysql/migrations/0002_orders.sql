-- flashsale: the `orders` table the order worker (examples/order_worker.rs)
-- folds order events into, idempotently: one row per order, whose status
-- only moves forward (`last_seq` is the seq of the last event applied; an
-- event whose seq is not above it is a duplicate or arrived late, and
-- changes nothing).
--
-- `{prefix}` is replaced by the table prefix, as in 0001_stock.sql.
CREATE TABLE IF NOT EXISTS {prefix}orders (
  order_id        BINARY(16) NOT NULL,
  product_id      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  user_id         VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  quantity        INT UNSIGNED NOT NULL,
  idempotency_key VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  created_at      BIGINT UNSIGNED NOT NULL,
  -- Sales with holds only: when the unconfirmed hold lapses.
  hold_expires_at BIGINT UNSIGNED NULL,
  -- placed | confirmed | cancelled | expired | voided
  status          VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  last_seq        SMALLINT UNSIGNED NOT NULL,
  -- The event id of the last event applied, and when it happened.
  last_event_id   VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  updated_at      BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (order_id),
  KEY by_product (product_id, status),
  KEY by_user (user_id, created_at)
) ENGINE = InnoDB;
