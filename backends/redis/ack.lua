-- flashsale: remove delivered events from ONE product's outbox (idempotent:
-- unknown ids are ignored).
--
-- KEYS[1] {p:x}:outbox  KEYS[2] {p:x}:events
-- KEYS[3] optional: {p}|pending (standalone Redis only): the product
--         is removed from it when its outbox is empty, in this same atomic
--         step (reserve.lua adds it back atomically with its event)
-- ARGV[1] product id   ARGV[2..] event ids
--
-- Returns the number of events left in the outbox.
local outbox, events, gset = KEYS[1], KEYS[2], KEYS[3]
for i = 2, #ARGV do
  redis.call('ZREM', outbox, ARGV[i])
  redis.call('HDEL', events, ARGV[i])
end
local left = redis.call('ZCARD', outbox)
if left == 0 and gset then
  redis.call('SREM', gset, ARGV[1])
end
return left
