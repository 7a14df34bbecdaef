-- flashsale: what the cluster's repair pass needs to know of ONE product:
-- how many events its outbox holds, and when its next hold expiry or purge
-- is due (the earlier of the two index heads).
--
-- KEYS[1] {p:x}:outbox   KEYS[2] {p:x}:exp   KEYS[3] {p:x}:done
--
-- Returns {events in the outbox, next due ms ("" = nothing due)}.
local left = redis.call('ZCARD', KEYS[1])
local next_due
local e = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local d = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if e[2] then next_due = tonumber(e[2]) end
if d[2] and (not next_due or tonumber(d[2]) < next_due) then next_due = tonumber(d[2]) end
if next_due then
  return {tostring(left), string.format('%.0f', next_due)}
end
return {tostring(left), ''}
