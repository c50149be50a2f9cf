-- Hold one delivery report (a report held again keeps its first time), then trim the hold.
-- KEYS: held hash, its index (field -> first held, Unix s), telemetry hash (counts what is dropped).
-- ARGV: now (Unix s), seconds a report is held, reports held at most, field, report JSON.
-- -> entries dropped.
local held, held_at, telemetry = KEYS[1], KEYS[2], KEYS[3]
local now, ttl_s, cap, field, report = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

redis.call('HSET', held, field, report)
redis.call('PERSIST', held)  -- versions before this one kept a single TTL on the whole hash
redis.call('ZADD', held_at, 'NX', now, field)
return trim_held(held, held_at, tonumber(now) - tonumber(ttl_s), tonumber(cap), telemetry)
