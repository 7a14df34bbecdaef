-- flashsale: turn a hold into a sale, if it is still held and not past its
-- expiry at `now`. A hold found past its expiry is expired on the spot (its
-- units go back on sale), exactly as the sweeper would.
--
-- KEYS[1] {p:x}:sale  KEYS[2] {p:x}:users  KEYS[3] {p:x}:res
-- KEYS[4] {p:x}:exp   KEYS[5] {p:x}:done   zset: finished order id by purge time
-- ARGV[1] order id   ARGV[2] now (ms)   ARGV[3] record retention (ms)
--
-- Returns {"committed"} | {"already_committed"} | {"not_held", state}
--       | {"unknown"}
local sale, users, res, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local oid = ARGV[1]

-- Finished records are purged by the sweeper `retention` ms after they
-- finished, by the server's clock (shared by every app instance).
local function retire(id)
  local t = redis.call('TIME')
  local purge_at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
  redis.call('ZADD', done, string.format('%.0f', purge_at), id)
end

local enc = redis.call('HGET', res, oid)
if not enc then
  return {'unknown'}
end
local r = cjson.decode(enc)
if r.s == 'committed' then
  return {'already_committed'}
end
if r.s ~= 'held' then
  return {'not_held', r.s}
end
local q = tonumber(r.q)
redis.call('ZREM', exp, oid)
redis.call('HINCRBY', sale, 'held', -q)
if tonumber(ARGV[2]) >= tonumber(r.e) then
  redis.call('HINCRBY', sale, 'available', q)
  if redis.call('HINCRBY', users, r.u, -q) <= 0 then
    redis.call('HDEL', users, r.u)
  end
  r.s = 'expired'
  redis.call('HSET', res, oid, cjson.encode(r))
  retire(oid)
  return {'not_held', 'expired'}
end
redis.call('HINCRBY', sale, 'committed', q)
r.s = 'committed'
redis.call('HSET', res, oid, cjson.encode(r))
retire(oid)
return {'committed'}
