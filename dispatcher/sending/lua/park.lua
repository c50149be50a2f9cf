-- Park a claimed batch until its send window opens.
-- KEYS: campaign, batch, all parked, campaign's parked.
-- ARGV: member 'campaign_id:n', release time (Unix s), batch state to leave (p or u).
-- -> {reserve_from, reserve_to, campaign state}
local campaign, batch, all_parked, campaign_parked = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local member, release_at, leave = ARGV[1], ARGV[2], ARGV[3]

local _, now_s = now_parts()
redis.call('HSET', batch, 'st', leave, 'rc', leave == ST.UNKNOWN and '1' or '0', 'lease', '0')
if redis.call('HGET', batch, 'parked') ~= '1' then
  redis.call('HSET', batch, 'parked', '1')
  redis.call('HINCRBY', campaign, 'parked', 1)
  redis.call('HINCRBY', campaign, 'waiting', tonumber(redis.call('HGET', batch, 'size')))
end
redis.call('ZADD', all_parked, release_at, member)
redis.call('ZADD', campaign_parked, release_at, member)
return reserve_and_complete(campaign, nil, now_s)
