-- Library: the one writer of a new batch. Create the batch hash `batch` in state pending with `size`
-- messages, its compressed messages `blob` under their own key `payload`, its time-zone key `zones`
-- ('' for none) and `run_id`, the Redis process that holds it (a claim under another one
-- reconciles first).
local function create_batch(batch, payload, size, blob, zones, run_id)
  redis.call('DEL', batch)
  redis.call('HSET', batch, 'st', ST.PENDING, 'size', size, 'att', 0, 'fails', 0, 'rc', '0', 'settled', '0',
             'inc', run_id)
  redis.call('SET', payload, blob)
  if zones ~= '' then redis.call('HSET', batch, 'tz', zones) end
end
