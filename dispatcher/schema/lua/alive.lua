-- The workers whose heartbeat has not run out, in Redis' clock.
-- KEYS: workers.  -> their ids.
local workers = KEYS[1]

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', workers, '(' .. now, '+inf')
