-- Adopt held reports kept by earlier versions (no index entry), then trim the hold.
-- KEYS: held hash, its index (field -> first held, Unix s), telemetry hash (counts what is dropped).
-- ARGV: now (Unix s), seconds a report is held, reports held at most.  -> entries dropped.
local held, held_at, telemetry = KEYS[1], KEYS[2], KEYS[3]
local now, ttl_s, cap = ARGV[1], ARGV[2], ARGV[3]

if redis.call('HLEN', held) > redis.call('ZCARD', held_at) then
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', held, cursor, 'COUNT', 1000)
    cursor = page[1]
    for i = 1, #page[2], 2 do redis.call('ZADD', held_at, 'NX', now, page[2][i]) end
  until cursor == '0'
end
return trim_held(held, held_at, tonumber(now) - tonumber(ttl_s), tonumber(cap), telemetry)
