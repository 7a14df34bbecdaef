-- flashsale: reserve units of one product in ONE atomic step covering the
-- order id, the idempotency key, the sale window, the per-order maximum, the
-- stock, the per-user cap, the reservation record and the order's `placed`
-- event in the product's outbox. Nothing is written unless the reservation
-- is made.
--
-- A sale without holds sells at once: the record is `committed` (and
-- scheduled for purge after the retention). A hold sale's record is `held`
-- and goes into the hold-expiry index.
--
-- KEYS[1]  {p:x}:sale    hash: terms + levels (total available held committed)
-- KEYS[2]  {p:x}:users   hash: user -> units held + committed
-- KEYS[3]  {p:x}:res     hash: order id -> reservation record (JSON)
-- KEYS[4]  {p:x}:idem    hash: "<len(user)>:<user><key>" -> order id
-- KEYS[5]  {p:x}:exp     zset: order id by expires_at (ms) of held units
-- KEYS[6]  {p:x}:done    zset: finished order id by purge time (ms)
-- KEYS[7]  {p:x}:outbox  zset: event id by the ms it may be claimed from
-- KEYS[8]  {p:x}:events  hash: closing event id -> "<type>|<at ms>|<record
--          JSON>" (unused here: a `placed` event is its record, claim.lua)
-- KEYS[9]  {p:x}:claims  base of the zsets {p:x}:claims:<order id>: replay
--          order id -> ms its claim on the order lapses (holds.lua)
-- KEYS[10] optional: p|order:<order id> -> product   } standalone Redis
-- KEYS[11] optional: {p}|pending (set of products    } only; on a cluster
--          with pending events)                      } they live in other
-- KEYS[12] optional: {p}|due (zset of products by    } slots and are
--          next expiry or purge, ms)                 } written afterwards
-- ARGV[1] order id   ARGV[2] user   ARGV[3] quantity
-- ARGV[4] idempotency field ("" = none)   ARGV[5] idempotency key ("" = none)
-- ARGV[6] now (ms)   ARGV[7] order-index ttl (ms)   ARGV[8] product id
-- ARGV[9] record retention (ms)   ARGV[10] replay claim lifetime (ms)
--
-- Returns {"reserved", record} (made now, or found under the same order id:
--         a retry of the same request, whatever its state, even a voided
--         tombstone)
--       | {"duplicate", record} (the idempotency key names another order;
--         a same-request replay of a live order claims it for ARGV[10] ms)
--       | {"sold_out"} | {"limit_exceeded"} | {"not_on_sale"}
--       | {"over_order_max", max} | {"unknown_product"}
-- (holds.lua is prepended: append_event, schedule_purge, ...)
local sale, users, res, idem, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local outbox, events, claims = KEYS[7], KEYS[8], KEYS[9]
global.pending, global.due, global.product, global.now = KEYS[11], KEYS[12], ARGV[8], ARGV[6]
local oid, user, q = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ifield, ikey = ARGV[4], ARGV[5]
local now = tonumber(ARGV[6])

local existing = redis.call('HGET', res, oid)
if existing then
  return {'reserved', existing}
end
local s = redis.call('HMGET', sale, 'available', 'limit', 'omax', 'start', 'end', 'hold_ms')
if not s[1] then
  return {'unknown_product'}
end
if ifield ~= '' then
  local prior = redis.call('HGET', idem, ifield)
  if prior then
    local rec = redis.call('HGET', res, prior)
    if rec then
      -- The same request replayed (same quantity) will answer 2xx with this
      -- order: it claims the order, so that a void of the first request
      -- keeps it until this replay voids too (void.lua) or the claim lapses.
      local r = cjson.decode(rec)
      if (r.s == 'held' or r.s == 'committed') and r.q == ARGV[3] then
        local ttl = tonumber(ARGV[10])
        add_claim(claims, prior, oid, now, string.format('%.0f', now + ttl), ttl)
      end
      return {'duplicate', rec}
    end
  end
end
if (s[4] ~= '' and now < tonumber(s[4])) or (s[5] ~= '' and now >= tonumber(s[5])) then
  return {'not_on_sale'}
end
if q > tonumber(s[3]) then
  return {'over_order_max', s[3]}
end
if tonumber(s[1]) < q then
  return {'sold_out'}
end
local owned = tonumber(redis.call('HGET', users, user) or '0')
if owned + q > tonumber(s[2]) then
  return {'limit_exceeded'}
end

local hold = tonumber(s[6])
local rec
if hold > 0 then
  rec = {o = oid, u = user, q = ARGV[3], c = ARGV[6], e = string.format('%.0f', now + hold),
    w = '1', s = 'held'}
else
  rec = {o = oid, u = user, q = ARGV[3], c = ARGV[6], e = ARGV[6], w = '0', s = 'committed'}
end
if ikey ~= '' then
  rec.k = ikey
end
local enc = cjson.encode(rec)
redis.call('HINCRBY', sale, 'available', -q)
redis.call('HINCRBY', users, user, q)
if hold > 0 then
  redis.call('HINCRBY', sale, 'held', q)
  redis.call('ZADD', exp, rec.e, oid)
  due_at(rec.e)
else
  redis.call('HINCRBY', sale, 'committed', q)
  schedule_purge(done, oid, tonumber(ARGV[9]))
end
if ifield ~= '' then
  redis.call('HSET', idem, ifield, oid)
end
redis.call('HSET', res, oid, enc)
if KEYS[10] then
  redis.call('SET', KEYS[10], ARGV[8], 'PX', ARGV[7])
end
append_placed(outbox, oid, ARGV[6])
return {'reserved', enc}
