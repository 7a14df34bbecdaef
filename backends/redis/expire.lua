-- flashsale: the sweeper's step for ONE product (run once per product, so it
-- works on Redis Cluster): expire up to `max` holds whose expires_at <= now,
-- each with its `expired` event, then purge up to `purge` finished records
-- (and their idempotency keys) whose retention has passed by the server's
-- clock.
--
-- KEYS[1] {p:x}:sale   KEYS[2] {p:x}:users  KEYS[3] {p:x}:res
-- KEYS[4] {p:x}:idem   KEYS[5] {p:x}:exp    KEYS[6] {p:x}:done
-- KEYS[7] {p:x}:outbox KEYS[8] {p:x}:events
-- KEYS[9] optional: p:outbox:products (standalone Redis only)
-- ARGV[1] now (ms)   ARGV[2] max holds to expire (>= 1)
-- ARGV[3] max records to purge   ARGV[4] retention (ms)   ARGV[5] product id
--
-- Returns the expired reservation records (JSON), oldest expiry first.
-- (holds.lua is prepended.)
local sale, users, res, idem, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local outbox, events, gset = KEYS[7], KEYS[8], KEYS[9]
local now = ARGV[1]
local retention = tonumber(ARGV[4])

local out = {}
local due = redis.call('ZRANGEBYSCORE', exp, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, oid in ipairs(due) do
  redis.call('ZREM', exp, oid)
  local enc = redis.call('HGET', res, oid)
  if enc then
    local r = cjson.decode(enc)
    if r.s == 'held' then
      return_units(sale, users, exp, oid, r)
      enc = finish(res, done, oid, r, 'expired', retention)
      append_event(outbox, events, gset, ARGV[5], oid, '2', 'expired', now, enc)
      out[#out + 1] = enc
    end
  end
end

local old = redis.call('ZRANGEBYSCORE', done, '-inf', string.format('%.0f', server_ms()), 'LIMIT', 0, tonumber(ARGV[3]))
for _, oid in ipairs(old) do
  redis.call('ZREM', done, oid)
  local enc = redis.call('HGET', res, oid)
  if enc then
    local r = cjson.decode(enc)
    if r.s ~= 'held' then
      forget(res, idem, oid, r)
    end
  end
end
return out
