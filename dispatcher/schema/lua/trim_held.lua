-- Library: drop the held delivery reports (dispatcher.delivery.held) first held before `cutoff`
-- (Unix s), then the oldest beyond `cap`, counting them in the hash `telemetry` (no send ever
-- matched them). Returns how many it dropped.
local function trim_held(held, held_at, cutoff, cap, telemetry)
  local gone = redis.call('ZRANGEBYSCORE', held_at, '-inf', '(' .. cutoff)
  local over = redis.call('ZCARD', held_at) - #gone - cap
  if over > 0 then
    for _, field in ipairs(redis.call('ZRANGE', held_at, #gone, #gone + over - 1)) do gone[#gone + 1] = field end
  end
  for i = 1, #gone, 500 do
    local part = {unpack(gone, i, math.min(i + 499, #gone))}
    redis.call('HDEL', held, unpack(part))
    redis.call('ZREM', held_at, unpack(part))
  end
  if #gone > 0 then redis.call('HINCRBY', telemetry, REFUSED.expired, #gone) end
  return #gone
end
