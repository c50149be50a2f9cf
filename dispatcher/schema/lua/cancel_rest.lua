-- Library: mark every message of a batch without a terminal record cancelled, and settle the
-- batch as done. Returns how many messages it cancelled.
local function cancel_rest(campaign, batch, ledger)
  local b = redis.call('HMGET', batch, 'size', 'att', 'settled', 'parked')
  local size, attempts = tonumber(b[1]), b[2] or '0'
  local n = 0
  for i = 0, size - 1 do
    local old = redis.call('HGET', ledger, tostring(i))
    local oc = old and string.sub(old, 1, 1)
    if not (oc and TERMINAL[oc]) then
      if oc == CODE.unknown then redis.call('HINCRBY', campaign, COUNTER[CODE.unknown], -1) end
      redis.call('HSET', ledger, tostring(i), CODE.cancelled .. '|' .. attempts .. '|cancelled')
      n = n + 1
    end
  end
  redis.call('HINCRBY', campaign, COUNTER[CODE.cancelled], n)
  redis.call('HSET', batch, 'st', ST.DONE, 'rc', '0', 'lease', '0')
  if b[4] == '1' then
    redis.call('HSET', batch, 'parked', '0')
    redis.call('HINCRBY', campaign, 'parked', -1)
    redis.call('HINCRBY', campaign, 'waiting', -size)
  end
  if b[3] ~= '1' then
    redis.call('HSET', batch, 'settled', '1')
    redis.call('HINCRBY', campaign, 'settled', 1)
  end
  return n
end
