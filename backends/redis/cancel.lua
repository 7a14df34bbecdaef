-- flashsale: give a hold's units back to the stock, if it is still held and
-- not past its expiry at `now`, and append its `cancelled` event. The record
-- stays (state cancelled) until purged, so its idempotency key keeps
-- answering with it. A hold found past its expiry is expired on the spot
-- (`expired` event), exactly as the sweeper would.
--
-- KEYS[1] {p:x}:sale   KEYS[2] {p:x}:users  KEYS[3] {p:x}:res
-- KEYS[4] {p:x}:exp    KEYS[5] {p:x}:done   KEYS[6] {p:x}:outbox
-- KEYS[7] {p:x}:events
-- KEYS[8] optional: {p}|pending   } standalone Redis only; on a cluster
-- KEYS[9] optional: {p}|due       } written afterwards
-- ARGV[1] order id   ARGV[2] now (ms)   ARGV[3] record retention (ms)
-- ARGV[4] product id
--
-- Returns {"cancelled"} | {"already_cancelled"} | {"not_held", state}
--       | {"unknown"}
-- (holds.lua is prepended.)
local sale, users, res, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local outbox, events = KEYS[6], KEYS[7]
local oid, now = ARGV[1], ARGV[2]
global.pending, global.due, global.product, global.now = KEYS[8], KEYS[9], ARGV[4], ARGV[2]
local retention = tonumber(ARGV[3])

local enc = redis.call('HGET', res, oid)
if not enc then
  return {'unknown'}
end
local r = cjson.decode(enc)
if r.s == 'cancelled' then
  return {'already_cancelled'}
end
if r.s ~= 'held' then
  return {'not_held', r.s}
end
return_units(sale, users, exp, oid, r)
if tonumber(now) >= tonumber(r.e) then
  enc = finish(res, done, oid, r, 'expired', retention)
  append_event(outbox, events, oid, '2', 'expired', now, enc)
  return {'not_held', 'expired'}
end
enc = finish(res, done, oid, r, 'cancelled', retention)
append_event(outbox, events, oid, '2', 'cancelled', now, enc)
return {'cancelled'}
