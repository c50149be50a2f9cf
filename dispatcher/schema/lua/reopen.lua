-- Give an unsettled or given-up batch fresh attempts.
-- KEYS: campaign, batch.  -> 1 when the batch is not done (and should be enqueued), else 0.
local campaign, batch = KEYS[1], KEYS[2]

local b = redis.call('HMGET', batch, 'st', 'settled')
if not b[1] or b[1] == ST.DONE then return 0 end
if b[2] == '1' then
  redis.call('HSET', batch, 'settled', '0')
  redis.call('HINCRBY', campaign, 'settled', -1)
end
redis.call('HSET', batch, 'fails', 0)
return 1
