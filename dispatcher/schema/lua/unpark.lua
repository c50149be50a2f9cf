-- Take one released batch out of the waiting sets.
-- KEYS: all parked, campaign's parked, campaign, batch.  ARGV: member 'campaign_id:n'.
-- -> 1 when the member was still parked, else 0.
local all_parked, campaign_parked, campaign, batch = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local member = ARGV[1]

local removed = redis.call('ZREM', all_parked, member)
redis.call('ZREM', campaign_parked, member)
if redis.call('HGET', batch, 'parked') == '1' then
  redis.call('HSET', batch, 'parked', '0')
  redis.call('HINCRBY', campaign, 'parked', -1)
  redis.call('HINCRBY', campaign, 'waiting', -tonumber(redis.call('HGET', batch, 'size') or '0'))
end
return removed
