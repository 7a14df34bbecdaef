-- flashsale: reserve units of one product in ONE atomic step covering the
-- order id, the idempotency key, the sale window, the per-order maximum, the
-- stock, the per-user cap, the hold record and the hold-expiry index.
-- Nothing is written unless the reservation is made.
--
-- KEYS[1]  {p:x}:sale   hash: terms + levels (total available held committed)
-- KEYS[2]  {p:x}:users  hash: user -> units held + committed
-- KEYS[3]  {p:x}:res    hash: order id -> reservation record (JSON)
-- KEYS[4]  {p:x}:idem   hash: "<len(user)>:<user><key>" -> order id
-- KEYS[5]  {p:x}:exp    zset: order id by expires_at (ms) of held units
-- KEYS[6]  optional: p:order:<order id> -> product (standalone Redis only;
--          on a cluster it lives in another slot and is written afterwards)
-- ARGV[1] order id   ARGV[2] user   ARGV[3] quantity
-- ARGV[4] idempotency field ("" = none)   ARGV[5] idempotency key ("" = none)
-- ARGV[6] now (ms)   ARGV[7] pending ttl (ms, used when the sale has no hold)
-- ARGV[8] order-index ttl (ms)   ARGV[9] product id
--
-- Returns {"reserved", record} | {"duplicate", record} | {"sold_out"}
--       | {"limit_exceeded"} | {"not_on_sale"} | {"over_order_max", max}
--       | {"unknown_product"}
local sale, users, res, idem, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local oid, user, q = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ifield, ikey = ARGV[4], ARGV[5]
local now = tonumber(ARGV[6])

local s = redis.call('HMGET', sale, 'available', 'limit', 'omax', 'start', 'end', 'hold_ms')
if not s[1] then
  return {'unknown_product'}
end
local existing = redis.call('HGET', res, oid)
if existing then
  return {'duplicate', existing}
end
if ifield ~= '' then
  local prior = redis.call('HGET', idem, ifield)
  if prior then
    local rec = redis.call('HGET', res, prior)
    if rec then
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
local ttl, awaits = tonumber(ARGV[7]), '0'
if hold > 0 then
  ttl, awaits = hold, '1'
end
local expires = string.format('%.0f', now + ttl)
local rec = {o = oid, u = user, q = ARGV[3], c = ARGV[6], e = expires, w = awaits, s = 'held'}
if ikey ~= '' then
  rec.k = ikey
end
local enc = cjson.encode(rec)
redis.call('HINCRBY', sale, 'available', -q)
redis.call('HINCRBY', sale, 'held', q)
redis.call('HINCRBY', users, user, q)
if ifield ~= '' then
  redis.call('HSET', idem, ifield, oid)
end
redis.call('ZADD', exp, expires, oid)
redis.call('HSET', res, oid, enc)
if KEYS[6] then
  redis.call('SET', KEYS[6], ARGV[9], 'PX', ARGV[8])
end
return {'reserved', enc}
