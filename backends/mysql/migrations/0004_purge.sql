-- Finished reservations are purged a record TTL after they finish (as in
-- the memory and Redis stores): `finished_at` (ms, the app's clock) is set
-- when a reservation is sold at once, confirmed, cancelled, expired or
-- voided, and stays NULL while it is held.
ALTER TABLE {prefix}reservations
  ADD COLUMN IF NOT EXISTS finished_at BIGINT UNSIGNED NULL,
  ADD KEY IF NOT EXISTS by_finish (finished_at);
-- Records finished before this migration: count from their creation.
UPDATE {prefix}reservations SET finished_at = created_at
  WHERE state <> 'held' AND finished_at IS NULL;
