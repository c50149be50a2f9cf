-- Refresh (or, with 0 ms, release) a loader's lease if it is still ours.
-- KEYS: lease.  ARGV: token, ms.  -> 1 when it was ours, else 0.
local lease = KEYS[1]
local token, ms = ARGV[1], ARGV[2]

if redis.call('GET', lease) ~= token then return 0 end
if tonumber(ms) > 0 then redis.call('PEXPIRE', lease, ms) else redis.call('DEL', lease) end
return 1
