-- flashsale: the sweeper's step for ONE product (run once per product, so it
-- works on Redis Cluster): release up to `max` holds whose expires_at <= now,
-- then purge up to `purge` finished records (and their idempotency keys)
-- whose retention has passed by the server's clock.
--
-- KEYS[1] {p:x}:sale  KEYS[2] {p:x}:users  KEYS[3] {p:x}:res
-- KEYS[4] {p:x}:idem  KEYS[5] {p:x}:exp    KEYS[6] {p:x}:done
-- ARGV[1] now (ms)   ARGV[2] max holds to expire (>= 1)
-- ARGV[3] max records to purge   ARGV[4] retention (ms)
--
-- Returns the expired reservation records (JSON), oldest expiry first.
-- (holds.lua is prepended: server_ms, return_units, finish, forget.)
local sale, users, res, idem, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local retention = tonumber(ARGV[4])

local out = {}
local due = redis.call('ZRANGEBYSCORE', exp, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, oid in ipairs(due) do
  redis.call('ZREM', exp, oid)
  local enc = redis.call('HGET', res, oid)
  if enc then
    local r = cjson.decode(enc)
    if r.s == 'held' then
      return_units(sale, users, exp, oid, r)
      out[#out + 1] = finish(res, done, oid, r, 'expired', retention)
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
