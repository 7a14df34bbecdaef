-- flashsale: one GCRA (generic cell rate algorithm) check, on the Redis
-- server's clock so every app instance agrees on "now".
--
-- KEYS[1]  p:rate:<key>   string: the theoretical arrival time (TAT), in
--          microseconds since the epoch; expires when the key is idle
-- ARGV[1]  emission interval T = period / count (microseconds)
-- ARGV[2]  burst (count)
-- ARGV[3]  cost (>= 1)
--
-- A request of cost n is admitted iff  now >= max(TAT, now) + n*T - count*T.
-- Admitted: TAT advances by n*T. Refused: nothing is written.
-- Returns {1, 0} (allowed) | {0, retry_after_us} (limited)
--
-- Clock steps: TIME is this Redis host's wall clock and TATs are wall-clock
-- times, so a step of that clock acts on every key. A step back by D puts
-- recently used keys' TAT up to D in the future: they are refused, with a
-- retry-after of about D, until the clock catches up. A step forward by D
-- makes every TAT look D older: quotas replenish early, once. The script
-- does not guard against either (it has no monotonic clock to compare with).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local new_tat = tat + interval * tonumber(ARGV[3])
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, allow_at - now}
end
local idle_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', idle_ms))
return {1, 0}
