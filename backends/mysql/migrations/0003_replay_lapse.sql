-- A replay's claim on an order lapses (ms, the app's clock): after that no
-- void of the replay can arrive, and the sweeper deletes the row, so the
-- table holds only the claims of one claim lifetime.
ALTER TABLE {prefix}replays
  ADD COLUMN IF NOT EXISTS lapses_at BIGINT NOT NULL DEFAULT 0,
  ADD KEY IF NOT EXISTS lapse (lapses_at);
