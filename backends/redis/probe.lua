-- flashsale: what the cluster's repair pass needs to know of ONE product:
-- how many events its outbox holds, and when its next hold expiry or purge
-- is due (the earlier of the two index heads).
--
-- KEYS[1] {p:x}:outbox   KEYS[2] {p:x}:exp   KEYS[3] {p:x}:done
--
-- Returns {events in the outbox, next due ms ("" = nothing due)}.
-- (holds.lua is prepended.)
local left = redis.call('ZCARD', KEYS[1])
local at = next_due(KEYS[2], KEYS[3])
if at then
  return {tostring(left), string.format('%.0f', at)}
end
return {tostring(left), ''}
