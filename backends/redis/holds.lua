-- flashsale: helpers shared by commit.lua, release.lua and expire.lua.
-- Prepended to each of them when the crate embeds the scripts, so every
-- script still runs as ONE atomic EVALSHA.

-- Milliseconds on the Redis server's clock (shared by every app instance).
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Moves a held reservation's units from `held` back to `available` and
-- lowers its buyer's count; takes it off the expiry index.
local function return_units(sale, users, exp, oid, r)
  local q = tonumber(r.q)
  redis.call('ZREM', exp, oid)
  redis.call('HINCRBY', sale, 'held', -q)
  redis.call('HINCRBY', sale, 'available', q)
  if redis.call('HINCRBY', users, r.u, -q) <= 0 then
    redis.call('HDEL', users, r.u)
  end
end

-- Stores the reservation in its final state `state` and schedules its purge
-- `retention_ms` from now by the server's clock. Returns the new JSON.
local function finish(res, done, oid, r, state, retention_ms)
  r.s = state
  local enc = cjson.encode(r)
  redis.call('HSET', res, oid, enc)
  redis.call('ZADD', done, string.format('%.0f', server_ms() + retention_ms), oid)
  return enc
end

-- Deletes the reservation record and its idempotency key (if the key still
-- names this reservation).
local function forget(res, idem, oid, r)
  redis.call('HDEL', res, oid)
  if r.k then
    local field = string.len(r.u) .. ':' .. r.u .. r.k
    if redis.call('HGET', idem, field) == oid then
      redis.call('HDEL', idem, field)
    end
  end
end

