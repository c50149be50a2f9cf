-- Pause a rate-limit lane until a time; only ever extends a pause.
-- KEYS: lane pause.  ARGV: pause until (Unix µs).  -> 0
local pause = KEYS[1]
local until_us = ARGV[1]

local target = tonumber(until_us)
local current = tonumber(redis.call('GET', pause) or '0')
if target > current then
  redis.call('SET', pause, until_us, 'PX', math.max(1, math.floor((target - current) / 1000) + 1000))
end
return 0
