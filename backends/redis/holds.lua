-- flashsale: helpers shared by reserve.lua, confirm.lua, cancel.lua,
-- void.lua and expire.lua. Prepended to each of them when the crate embeds
-- the scripts, so every script still runs as ONE atomic EVALSHA.

-- Milliseconds on the Redis server's clock (shared by every app instance).
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Gives a reservation's units back to `available`: from `held` for a hold,
-- from `committed` for a sold one. Lowers its buyer's count and takes it off
-- the expiry index. Call it before changing `r.s`.
local function return_units(sale, users, exp, oid, r)
  local q = tonumber(r.q)
  if r.s == 'committed' then
    redis.call('HINCRBY', sale, 'committed', -q)
  else
    redis.call('ZREM', exp, oid)
    redis.call('HINCRBY', sale, 'held', -q)
  end
  redis.call('HINCRBY', sale, 'available', q)
  if redis.call('HINCRBY', users, r.u, -q) <= 0 then
    redis.call('HDEL', users, r.u)
  end
end

-- Schedules the purge of record `oid` `retention_ms` from now by the
-- server's clock.
local function schedule_purge(done, oid, retention_ms)
  redis.call('ZADD', done, string.format('%.0f', server_ms() + retention_ms), oid)
end

-- Stores the reservation in state `state` and schedules its purge
-- `retention_ms` from now by the server's clock. Returns the new JSON.
local function finish(res, done, oid, r, state, retention_ms)
  r.s = state
  local enc = cjson.encode(r)
  redis.call('HSET', res, oid, enc)
  schedule_purge(done, oid, retention_ms)
  return enc
end

-- The idempotency hash field of a record with key `r.k`:
-- "<byte length of user>:<user><key>".
local function idem_field(r)
  return string.len(r.u) .. ':' .. r.u .. r.k
end

-- Deletes the record's idempotency key, if it still names order `oid`.
local function free_key(idem, oid, r)
  if r.k then
    local field = idem_field(r)
    if redis.call('HGET', idem, field) == oid then
      redis.call('HDEL', idem, field)
    end
  end
end

-- Deletes the reservation record and its idempotency key (if the key still
-- names this reservation).
local function forget(res, idem, oid, r)
  redis.call('HDEL', res, oid)
  free_key(idem, oid, r)
end

-- Appends event `<oid>.<seq>` to the product's outbox: the zset `outbox`
-- (event id -> ms from which it may be claimed, here `at`) and the hash
-- `events` (event id -> "<type>|<at ms>|<record JSON>"). `gset` (standalone
-- Redis only, else nil) is the set of products with pending events.
local function append_event(outbox, events, gset, product, oid, seq, kind, at, enc)
  local id = oid .. '.' .. seq
  redis.call('ZADD', outbox, at, id)
  redis.call('HSET', events, id, kind .. '|' .. at .. '|' .. enc)
  if gset then
    redis.call('SADD', gset, product)
  end
end

