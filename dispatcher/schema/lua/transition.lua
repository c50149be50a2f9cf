-- Move a campaign to a target state when TRANSITIONS allow it.
-- KEYS: campaign.  ARGV: target, reason, now (Unix s).
-- -> {'ok', old} | {'refused', old} | {'missing'}
local campaign = KEYS[1]
local target, reason, now_s = ARGV[1], ARGV[2], ARGV[3]

local state = redis.call('HGET', campaign, 'state')
if not state then return {'missing'} end
if not set_state(campaign, target, 'reason', reason, 'updated_at', now_s) then return {'refused', state} end
if target == S.COMPLETED or target == S.CANCELLED or target == S.FAILED then
  redis.call('HSET', campaign, 'finished_at', now_s)
end
return {'ok', state}
