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
-- (holds.lua is prepended: server_ms, return_units, finish, forget.)
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
return_units(sale, users, exp, oid, r)
if ARGV[2] == 'aborted' then
  forget(res, idem, oid, r)
else
  finish(res, done, oid, r, 'cancelled', tonumber(ARGV[3]))
end
return {'released'}
