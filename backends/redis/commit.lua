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
-- (holds.lua is prepended: server_ms, return_units, finish, forget.)
local sale, users, res, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local oid = ARGV[1]
local retention = tonumber(ARGV[3])

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
if tonumber(ARGV[2]) >= tonumber(r.e) then
  return_units(sale, users, exp, oid, r)
  finish(res, done, oid, r, 'expired', retention)
  return {'not_held', 'expired'}
end
local q = tonumber(r.q)
redis.call('ZREM', exp, oid)
redis.call('HINCRBY', sale, 'held', -q)
redis.call('HINCRBY', sale, 'committed', q)
finish(res, done, oid, r, 'committed', retention)
return {'committed'}
