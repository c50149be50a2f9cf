-- Park a claimed batch until its send window opens, if the caller still holds it.
-- KEYS: campaign, batch, ledger, all parked, campaign's parked.
-- ARGV: token, member 'campaign_id:n', release time (Unix s), batch state to leave (p or u).
-- -> {reserve_from, reserve_to, campaign state, 'parked' | 'stale' | 'cancelled'}
local campaign, batch, ledger, all_parked, campaign_parked = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, member, release_at, leave = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local _, now_s = now_parts()
if redis.call('HGET', batch, 'tok') ~= token then
  return {0, 0, redis.call('HGET', campaign, 'state') or '', 'stale'}
end
redis.call('HSET', batch, 'st', leave, 'rc', leave == ST.UNKNOWN and '1' or '0', 'lease', '0', 'tok', '',
           'ut', now_s)
if leave == ST.PENDING and redis.call('HGET', campaign, 'state') == S.CANCELLED then
  cancel_rest(campaign, batch, ledger)
  local r = reserve_and_complete(campaign, nil, now_s)
  return {r[1], r[2], r[3], 'cancelled'}
end
if redis.call('HGET', batch, 'parked') ~= '1' then
  redis.call('HSET', batch, 'parked', '1')
  redis.call('HINCRBY', campaign, 'parked', 1)
  redis.call('HINCRBY', campaign, 'waiting', tonumber(redis.call('HGET', batch, 'size')))
end
redis.call('ZADD', all_parked, release_at, member)
redis.call('ZADD', campaign_parked, release_at, member)
local r = reserve_and_complete(campaign, nil, now_s)
return {r[1], r[2], r[3], 'parked'}
