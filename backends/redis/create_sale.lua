-- flashsale: create a sale, or replace its terms and total stock (restock).
-- One product, one hash tag: every key below lives in the same slot.
--
-- KEYS[1]  {prefix:product}:sale   hash: terms + live levels
-- ARGV[1]  total stock
-- ARGV[2]  per-user limit
-- ARGV[3]  per-order maximum
-- ARGV[4]  starts_at (ms since epoch, "" = none)
-- ARGV[5]  ends_at   (ms since epoch, "" = none)
-- ARGV[6]  hold in ms, truncated ("0" = no hold)
-- ARGV[7]  hold in ns, exact (read back by Rust only)
--
-- Returns {"created"} | {"updated"} | {"stock_below_sold", held+committed}
local sale = KEYS[1]
local total = tonumber(ARGV[1])
local cur = redis.call('HMGET', sale, 'held', 'committed')
local taken = 0
local answer = 'created'
if cur[1] then
  taken = tonumber(cur[1]) + tonumber(cur[2])
  if total < taken then
    return {'stock_below_sold', tostring(taken)}
  end
  answer = 'updated'
else
  redis.call('HSET', sale, 'held', '0', 'committed', '0')
end
redis.call('HSET', sale,
  'total', ARGV[1],
  'available', string.format('%.0f', total - taken),
  'limit', ARGV[2],
  'omax', ARGV[3],
  'start', ARGV[4],
  'end', ARGV[5],
  'hold_ms', ARGV[6],
  'hold_ns', ARGV[7])
return {answer}
