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
local sale, users, res, idem, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local t = redis.call('TIME')
local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local purge_at = string.format('%.0f', server_ms + tonumber(ARGV[4]))

local out = {}
local due = redis.call('ZRANGEBYSCORE', exp, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, oid in ipairs(due) do
  redis.call('ZREM', exp, oid)
  local enc = redis.call('HGET', res, oid)
  if enc then
    local r = cjson.decode(enc)
    if r.s == 'held' then
      local q = tonumber(r.q)
      redis.call('HINCRBY', sale, 'held', -q)
      redis.call('HINCRBY', sale, 'available', q)
      if redis.call('HINCRBY', users, r.u, -q) <= 0 then
        redis.call('HDEL', users, r.u)
      end
      r.s = 'expired'
      enc = cjson.encode(r)
      redis.call('HSET', res, oid, enc)
      redis.call('ZADD', done, purge_at, oid)
      out[#out + 1] = enc
    end
  end
end

local old = redis.call('ZRANGEBYSCORE', done, '-inf', string.format('%.0f', server_ms), 'LIMIT', 0, tonumber(ARGV[3]))
for _, oid in ipairs(old) do
  redis.call('ZREM', done, oid)
  local enc = redis.call('HGET', res, oid)
  if enc then
    local r = cjson.decode(enc)
    if r.s ~= 'held' then
      redis.call('HDEL', res, oid)
      if r.k then
        local field = string.len(r.u) .. ':' .. r.u .. r.k
        if redis.call('HGET', idem, field) == oid then
          redis.call('HDEL', idem, field)
        end
      end
    end
  end
end
return out
