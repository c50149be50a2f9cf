-- Cancel a batch nobody is sending: every message without a terminal record becomes cancelled.
-- KEYS: campaign, batch, ledger.  -> number of messages marked cancelled.
local campaign, batch, ledger = KEYS[1], KEYS[2], KEYS[3]

local b = redis.call('HMGET', batch, 'st', 'rc', 'size', 'att', 'settled')
local st, rc, size, attempts, settled = b[1], b[2], tonumber(b[3]), b[4] or '0', b[5]
if st ~= ST.PENDING or rc == '1' then return 0 end
local n = 0
for i = 0, size - 1 do
  local old = redis.call('HGET', ledger, tostring(i))
  if not (old and TERMINAL[string.sub(old, 1, 1)]) then
    redis.call('HSET', ledger, tostring(i), CODE.cancelled .. '|' .. attempts .. '|cancelled')
    n = n + 1
  end
end
redis.call('HINCRBY', campaign, COUNTER[CODE.cancelled], n)
redis.call('HSET', batch, 'st', ST.DONE, 'rc', '0')
if redis.call('HGET', batch, 'parked') == '1' then
  redis.call('HSET', batch, 'parked', '0')
  redis.call('HINCRBY', campaign, 'parked', -1)
  redis.call('HINCRBY', campaign, 'waiting', -size)
end
if settled ~= '1' then
  redis.call('HSET', batch, 'settled', '1')
  redis.call('HINCRBY', campaign, 'settled', 1)
end
return n
