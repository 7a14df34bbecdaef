-- flashsale: return a hold's units to the stock.
-- reason "cancelled": the record stays (state cancelled), its idempotency key
-- keeps answering. reason "aborted": the record and its idempotency key are
-- deleted, so a retry with the same key starts afresh.
--
-- KEYS[1] {p:x}:sale  KEYS[2] {p:x}:users  KEYS[3] {p:x}:res
-- KEYS[4] {p:x}:idem  KEYS[5] {p:x}:exp    KEYS[6] {p:x}:done
-- ARGV[1] order id   ARGV[2] "aborted" | "cancelled"   ARGV[3] retention (ms)
--
-- Returns {"released"} | {"already_released", state} | {"already_committed"}
--       | {"unknown"}
local sale, users, res, idem, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local oid = ARGV[1]

local enc = redis.call('HGET', res, oid)
if not enc then
  return {'unknown'}
end
local r = cjson.decode(enc)
if r.s == 'committed' then
  return {'already_committed'}
end
if r.s ~= 'held' then
  return {'already_released', r.s}
end
local q = tonumber(r.q)
redis.call('ZREM', exp, oid)
redis.call('HINCRBY', sale, 'held', -q)
redis.call('HINCRBY', sale, 'available', q)
if redis.call('HINCRBY', users, r.u, -q) <= 0 then
  redis.call('HDEL', users, r.u)
end
if ARGV[2] == 'aborted' then
  redis.call('HDEL', res, oid)
  if r.k then
    local field = string.len(r.u) .. ':' .. r.u .. r.k
    if redis.call('HGET', idem, field) == oid then
      redis.call('HDEL', idem, field)
    end
  end
else
  r.s = 'cancelled'
  redis.call('HSET', res, oid, cjson.encode(r))
  local t = redis.call('TIME')
  local purge_at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
  redis.call('ZADD', done, string.format('%.0f', purge_at), oid)
end
return {'released'}
