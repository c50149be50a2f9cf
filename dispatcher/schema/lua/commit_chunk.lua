-- Store one chunk of a campaign's list whole (dispatcher.sending.chunkstore): its rejects, its new
-- batches (see batch.lua) and the campaign's counters, if the caller still holds the loader lease.
-- KEYS: campaign, loader lease, rejects, then per new batch: its hash, its payload.
-- ARGV: lease token, first batch number expected, messages, loaded row, rows read, Redis run id (the
--       batches' inc), number of rejects R, the R rejects (JSON), then per batch: size, blob,
--       time zones ('' for none).
-- -> {'ok'} | {'lost'} (another loader holds the lease) | {'moved'} (batches already stored)
--    | {'stopped', state} (paused, cancelled, failed...: store nothing)
local campaign, lease, rejects = KEYS[1], KEYS[2], KEYS[3]
local token, first, messages, loaded_row, rows_read = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local run_id, reject_count = ARGV[6], tonumber(ARGV[7])

if redis.call('GET', lease) ~= token then return {'lost'} end
local c = redis.call('HMGET', campaign, 'state', 'batches')
if not SENDING[c[1]] then return {'stopped', c[1] or ''} end
if tonumber(c[2]) ~= tonumber(first) then return {'moved'} end
for i = 8, 7 + reject_count do redis.call('RPUSH', rejects, ARGV[i]) end
local at = 8 + reject_count
for k = 4, #KEYS, 2 do
  create_batch(KEYS[k], KEYS[k + 1], ARGV[at], ARGV[at + 1], ARGV[at + 2], run_id)
  at = at + 3
end
redis.call('HINCRBY', campaign, 'batches', (#KEYS - 3) / 2)
redis.call('HINCRBY', campaign, 'total', tonumber(messages))
redis.call('HSET', campaign, 'loaded_row', loaded_row, 'rows_read', rows_read)
return {'ok'}
