-- flashsale: undo a reserve whose answer was lost (its request answers 503,
-- so its buyer must own nothing).
--
-- * The record owns units (held, or sold by a sale without holds): they go
--   back on sale, the buyer's count drops, the idempotency key is freed if
--   it names this order (a retry with the key starts afresh), the record
--   stays as `voided` until purged, and a `voided` event (seq 2) follows
--   the order's `placed` one.
-- * The record is closed (cancelled, expired, or a confirmed hold, whose
--   `confirmed` event is its closing one): {"already_closed", state},
--   nothing changes.
-- * No record (the reserve never ran, or answered without reserving): a
--   `voided` tombstone owning nothing is written under the order id, so a
--   late run of that reserve answers {"reserved", tombstone} and reserves
--   nothing. No event.
--
-- KEYS[1] {p:x}:sale   KEYS[2] {p:x}:users  KEYS[3] {p:x}:res
-- KEYS[4] {p:x}:idem   KEYS[5] {p:x}:exp    KEYS[6] {p:x}:done
-- KEYS[7] {p:x}:outbox KEYS[8] {p:x}:events
-- KEYS[9] {p:x}:claims (base of the replay claims, holds.lua)
-- KEYS[10] optional: p|order:<order id>   } standalone Redis only; on a
-- KEYS[11] optional: {p}|pending          } cluster written afterwards
-- KEYS[12] optional: {p}|due              }
-- ARGV[1] order id   ARGV[2] user   ARGV[3] quantity
-- ARGV[4] idempotency key ("" = none)   ARGV[5] the request's time (ms)
-- ARGV[6] now (ms, stamps the event)    ARGV[7] record retention (ms)
-- ARGV[8] order-index ttl (ms)          ARGV[9] product id
--
-- Returns {"voided"} | {"nothing_reserved"} | {"nothing_reserved", "voided_claimed"}
--       (this request was the last replay holding a claim on the order its
--       key names, whose first request's void was waiting: that order was
--       voided now) | {"already_voided"} | {"already_closed", state}
--       | {"kept"} (a replay may have answered with this order: it holds a
--         claim on it; `vw` marks the first request's void as waiting)
-- (holds.lua is prepended.)
local sale, users, res, idem, exp, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local outbox, events, claims = KEYS[7], KEYS[8], KEYS[9]
global.pending, global.due, global.product, global.now = KEYS[11], KEYS[12], ARGV[9], ARGV[6]
local oid = ARGV[1]
local retention = tonumber(ARGV[7])

-- Undoes live order `id` (record `r`): units back, key freed if it names
-- it, record `voided`, `voided` event appended.
local function void_order(id, r)
  return_units(sale, users, exp, id, r)
  free_key(idem, id, r)
  r.vw = nil
  redis.call('DEL', claims .. ':' .. id)
  local done_enc = finish(res, done, id, r, 'voided', retention)
  append_event(outbox, events, id, '2', 'voided', ARGV[6], done_enc)
end

-- Still this request's to undo: held, or sold by a sale without holds (a
-- confirmed hold was answered by its buyer's confirm).
local function live(r)
  return r.s == 'held' or (r.s == 'committed' and r.w ~= '1')
end

local enc = redis.call('HGET', res, oid)
if not enc then
  local rec = {o = oid, u = ARGV[2], q = ARGV[3], c = ARGV[5], e = ARGV[5], w = '0', s = 'voided'}
  if ARGV[4] ~= '' then
    rec.k = ARGV[4]
  end
  redis.call('HSET', res, oid, cjson.encode(rec))
  schedule_purge(done, oid, retention)
  if KEYS[10] then
    redis.call('SET', KEYS[10], ARGV[9], 'PX', ARGV[8])
  end
  -- Was this request a replay of the order its key names? Then it no
  -- longer answers with it; if the first request's void is waiting and no
  -- other replay may hold it, the order is undone now.
  if ARGV[4] ~= '' then
    local prior = redis.call('HGET', idem, idem_field(rec))
    local penc = prior and redis.call('HGET', res, prior)
    if penc then
      local held, left = drop_claim(claims, prior, oid, ARGV[6])
      if held and left == 0 then
        local p = cjson.decode(penc)
        if p.vw == '1' and live(p) then
          void_order(prior, p)
          return {'nothing_reserved', 'voided_claimed'}
        end
      end
    end
  end
  return {'nothing_reserved'}
end
local r = cjson.decode(enc)
if r.s == 'voided' then
  return {'already_voided'}
end
-- A confirmed hold is closed too: its `confirmed` event already took seq 2.
if not live(r) then
  return {'already_closed', r.s}
end
-- A replay was handed this order and may have answered 2xx with it: keep
-- it until that replay voids too.
if live_claims(claims, oid, ARGV[6]) > 0 then
  r.vw = '1'
  redis.call('HSET', res, oid, cjson.encode(r))
  return {'kept'}
end
void_order(oid, r)
return {'voided'}
