-- Make a schedule's oldest held campaign its current one, if the current one is still the one the
-- caller saw (dispatcher.sending.schedules.store). `queued_campaign` is where versions that held one
-- campaign at most kept it; it goes first.
-- KEYS: schedule hash, held list.  ARGV: the current campaign the caller saw.
-- -> the campaign that becomes current, or nil.
local schedule, held = KEYS[1], KEYS[2]
local seen = ARGV[1]

if (redis.call('HGET', schedule, 'last_campaign') or '') ~= seen then return nil end
local cid = redis.call('HGET', schedule, 'queued_campaign')
if cid and cid ~= '' then
  redis.call('HDEL', schedule, 'queued_campaign')
else
  cid = redis.call('LPOP', held)
end
if not cid then return nil end
redis.call('HSET', schedule, 'last_campaign', cid)
return cid
