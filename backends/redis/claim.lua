-- flashsale: claim up to `max` pending events of ONE product's outbox that
-- are due at `now` (never claimed, or their lease has lapsed), leasing them
-- until `lease_until`: their score becomes `lease_until`, so no other claim
-- sees them before then.
--
-- An order's closing event (seq 2) is never handed out while its `placed`
-- event (seq 1) is still in the outbox and not in this same claim: if the
-- `placed` event is leased to someone else the closing one is skipped; if
-- it is due, both are claimed together (or neither, when only one more
-- fits).
--
-- KEYS[1] {p:x}:outbox  zset: event id -> ms it may be claimed from
-- KEYS[2] {p:x}:events  hash: closing event id -> "<type>|<at ms>|<record
--         JSON>"
-- KEYS[3] {p:x}:res     hash: order id -> record, the `placed` events' payload
-- KEYS[4] optional: {p}|pending (standalone Redis only): the product
--         is removed from it when its outbox is empty
-- ARGV[1] now (ms)   ARGV[2] max (>= 1)   ARGV[3] lease_until (ms)
-- ARGV[4] product id
--
-- Returns {events left in the outbox (claimed ones included), event...}
-- with each event as "<type>|<at ms>|<record JSON>".
local outbox, events, res, gset = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, max, lease_until = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now_n = tonumber(now)

local taken, ids, out, stale = {}, {}, {}, {}
-- A `placed` event (seq 1) is read from the order's record, which holds
-- every field it carries (reserve.lua); a closing one from `events`.
local function payload(id)
  local oid, seq = string.match(id, '^(.+)%.(%d+)$')
  if seq == '1' then
    local rec = redis.call('HGET', res, oid)
    if rec then
      -- No time (a corrupt record): an empty one, which the client reports
      -- and leaves in the outbox for an operator, as any unreadable event.
      return 'placed|' .. (string.match(rec, '"c":"(%d+)"') or '') .. '|' .. rec
    end
    -- Written by an earlier version, the payload is in `events`.
  end
  return redis.call('HGET', events, id)
end
local function take(id)
  local ev = payload(id)
  taken[id] = true
  if ev then
    ids[#ids + 1] = id
    out[#out + 1] = ev
  else
    stale[#stale + 1] = id
  end
end

-- Scores are left alone until the end, so the pages below stay stable.
local chunk = math.max(max, 64)
local offset = 0
while #ids < max do
  local page = redis.call('ZRANGEBYSCORE', outbox, '-inf', now, 'LIMIT', offset, chunk)
  for _, id in ipairs(page) do
    if #ids >= max then
      break
    end
    if not taken[id] then
      local oid, seq = string.match(id, '^(.+)%.(%d+)$')
      if seq == nil or seq == '1' then
        take(id)
      else
        local first = oid .. '.1'
        local s1 = redis.call('ZSCORE', outbox, first)
        if not s1 or taken[first] then
          take(id)
        elseif tonumber(s1) <= now_n and #ids + 2 <= max then
          take(first)
          take(id)
        end
        -- Otherwise `placed` is leased elsewhere (or does not fit): skip.
      end
    end
  end
  if #page < chunk then
    break
  end
  offset = offset + #page
end

for _, id in ipairs(ids) do
  redis.call('ZADD', outbox, lease_until, id)
end
for _, id in ipairs(stale) do
  redis.call('ZREM', outbox, id)
end
local left = redis.call('ZCARD', outbox)
if left == 0 and gset then
  redis.call('SREM', gset, ARGV[4])
end
table.insert(out, 1, tostring(left))
return out
