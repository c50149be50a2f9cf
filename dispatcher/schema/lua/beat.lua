-- A worker's heartbeat (dispatcher.sending.health): scored by when it runs out, in Redis' clock;
-- drops the heartbeats that ran out.
-- KEYS: workers.  ARGV: worker id, ttl (s).  -> 1
local workers = KEYS[1]
local worker, ttl_s = ARGV[1], ARGV[2]

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now)
redis.call('ZADD', workers, now + tonumber(ttl_s), worker)
redis.call('EXPIRE', workers, math.ceil(tonumber(ttl_s)) * 4)
return 1
