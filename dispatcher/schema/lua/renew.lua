-- Renew the lease of a claimed batch right before a POST, if the caller still holds it.
-- KEYS: batch.  ARGV: token, lease (µs).
-- -> µs the lease now has left; -1 when another claim took the batch (stale token); 0 when the
--    lease had already run out (the caller must not POST).
local batch = KEYS[1]
local token, lease_us = ARGV[1], tonumber(ARGV[2])

local now = now_parts()
local b = redis.call('HMGET', batch, 'tok', 'lease', 'st')
if b[1] ~= token or b[3] ~= ST.IN_FLIGHT then return -1 end
if tonumber(b[2] or '0') <= now then return 0 end
redis.call('HSET', batch, 'lease', string.format('%d', now + lease_us))
return lease_us
