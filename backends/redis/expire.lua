-- flashsale: the sweeper's step for ONE product that the due index named
-- (run once per product, so it works on Redis Cluster): expire up to `max`
-- holds whose expires_at <= now, each with its `expired` event, then purge
-- up to `purge` finished records (and their idempotency keys) whose
-- retention has passed at `now`. A record whose events are
-- still in the outbox is not purged (a replay must still find it): its
-- purge is put off by ARGV[6] ms. Last, the product's entry in the due
-- index is set to its next expiry or purge, or removed when it has none.
--
-- KEYS[1] {p:x}:sale   KEYS[2] {p:x}:users  KEYS[3] {p:x}:res
-- KEYS[4] {p:x}:idem   KEYS[5] {p:x}:exp    KEYS[6] {p:x}:done
-- KEYS[7] {p:x}:outbox KEYS[8] {p:x}:events
-- KEYS[9]  optional: {p}|pending  } standalone Redis only; on a cluster
-- KEYS[10] optional: {p}|due      } the client writes them afterwards
-- ARGV[1] now (ms)   ARGV[2] max holds to expire (>= 1)
-- ARGV[3] max records to purge   ARGV[4] retention (ms)   ARGV[5] product id
-- ARGV[6] how long a purge waits for undelivered events (ms)
--
-- Returns {next due ms ("" = nothing due), expired record (JSON)...},
-- oldest expiry first.
-- (holds.lua is prepended.)
local sale, users, res, idem, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local outbox, events = KEYS[7], KEYS[8]
global.pending, global.product, global.now = KEYS[9], ARGV[5], ARGV[1]
local now = ARGV[1]
local retention = tonumber(ARGV[4])

local out = {''}
local due = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, oid in ipairs(due) do
  redis.call('ZREM', exp, oid)
  local enc = redis.call('HGET', res, oid)
  if enc then
    local r = cjson.decode(enc)
    if r.s == 'held' then
      return_units(sale, users, exp, oid, r)
      enc = finish(res, done, oid, r, 'expired', retention)
      append_event(outbox, events, oid, '2', 'expired', now, enc)
      out[#out + 1] = enc
    end
  end
end

local old = redis.call('ZRANGEBYSCORE', done, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, oid in ipairs(old) do
  if redis.call('ZSCORE', outbox, oid .. '.1') or redis.call('ZSCORE', outbox, oid .. '.2') then
    redis.call('ZADD', done, string.format('%.0f', tonumber(now) + tonumber(ARGV[6])), oid)
  else
    redis.call('ZREM', done, oid)
    local enc = redis.call('HGET', res, oid)
    if enc then
      local r = cjson.decode(enc)
      if r.s ~= 'held' then
        forget(res, idem, oid, r)
      end
    end
  end
end

local at = next_due(exp, done)
if at then
  out[1] = string.format('%.0f', at)
end
if KEYS[10] then
  if at then
    redis.call('ZADD', KEYS[10], out[1], ARGV[5])
  else
    redis.call('ZREM', KEYS[10], ARGV[5])
  end
end
return out
