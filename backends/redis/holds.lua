-- flashsale: helpers shared by reserve.lua, confirm.lua, cancel.lua,
-- void.lua, expire.lua and probe.lua. Prepended to each of them when the crate embeds
-- the scripts, so every script still runs as ONE atomic EVALSHA.

-- The keys outside the product's slot, set by each script on standalone
-- Redis only (nil on a cluster, where the client writes them after the
-- script): `pending`, the set of products with pending events, and `due`,
-- the zset of products by the ms their next hold expiry or purge is due.
-- `now` is the operation's time (ms, the app's clock, as the memory store
-- is given it): purges are scheduled by it, as hold expiries are.
local global = {pending = nil, due = nil, product = nil, now = nil}

-- Something of this product falls due at `at` (ms): lower its entry in the
-- due index to `at` if that is earlier (standalone Redis only).
local function due_at(at)
  if global.due then
    redis.call('ZADD', global.due, 'LT', at, global.product)
  end
end

-- When the product's next hold expiry or purge is due (ms), or nil: the
-- earlier of the heads of its expiry index `exp` and purge index `done`.
local function next_due(exp, done)
  local at
  local e = redis.call('ZRANGE', exp, 0, 0, 'WITHSCORES')
  local d = redis.call('ZRANGE', done, 0, 0, 'WITHSCORES')
  if e[2] then at = tonumber(e[2]) end
  if d[2] and (not at or tonumber(d[2]) < at) then at = tonumber(d[2]) end
  return at
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

-- Schedules the purge of record `oid` `retention_ms` after `global.now`.
local function schedule_purge(done, oid, retention_ms)
  local at = string.format('%.0f', tonumber(global.now) + retention_ms)
  redis.call('ZADD', done, at, oid)
  due_at(at)
end

-- Stores the reservation in state `state` and schedules its purge
-- `retention_ms` after `global.now`. Returns the new JSON.
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

-- Puts event id `id` in the product's outbox, the zset `outbox` (event id
-- -> ms from which it may be claimed, here `at`), and marks the product
-- pending.
local function enqueue(outbox, id, at)
  redis.call('ZADD', outbox, at, id)
  if global.pending then
    redis.call('SADD', global.pending, global.product)
  end
end

-- Appends the closing event `<oid>.<seq>` to the product's outbox, with its
-- payload in the hash `events` (event id -> "<type>|<at ms>|<record JSON>"):
-- the record as it was closed.
local function append_event(outbox, events, oid, seq, kind, at, enc)
  local id = oid .. '.' .. seq
  enqueue(outbox, id, at)
  redis.call('HSET', events, id, kind .. '|' .. at .. '|' .. enc)
end

-- Appends order `oid`'s `placed` event (`<oid>.1`, at its creation `at`).
-- It has no payload of its own: the fields an order event carries never
-- change after the reserve, so claim.lua reads them from the record, and
-- each reserve writes its record once.
local function append_placed(outbox, oid, at)
  enqueue(outbox, oid .. '.1', at)
end

-- Replay claims: a same-request replay answered with order `prior` may
-- still void (its own answer lost) until its claim lapses. The claims on
-- `prior` are the zset `<base>:<prior>` (`base` is the product's
-- `{p:x}:claims`, so it shares the product's slot): replay order id -> ms
-- the claim lapses. It holds only the claims of one claim lifetime, and
-- expires with its last claim, whatever the number of replays in all.

-- Replay `oid` claims order `prior` until `until_ms` (lifetime `ttl_ms`).
local function add_claim(base, prior, oid, now, until_ms, ttl_ms)
  local key = base .. ':' .. prior
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, until_ms, oid)
  -- A backstop by the server's clock, a minute past the last lapse.
  redis.call('PEXPIRE', key, string.format('%.0f', ttl_ms + 60000))
end

-- Claims on `prior` that have not lapsed at `now`.
local function live_claims(base, prior, now)
  return redis.call('ZCOUNT', base .. ':' .. prior, '(' .. now, '+inf')
end

-- Replay `oid` gives up its claim on `prior`. Returns whether it held one
-- (not lapsed), and the claims on `prior` still live at `now`.
local function drop_claim(base, prior, oid, now)
  local key = base .. ':' .. prior
  local score = redis.call('ZSCORE', key, oid)
  if not score then
    return false, 0
  end
  redis.call('ZREM', key, oid)
  if tonumber(score) <= tonumber(now) then
    return false, 0
  end
  return true, live_claims(base, prior, now)
end

