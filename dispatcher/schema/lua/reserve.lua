-- Library: reserve the next batches for the queue window, and complete the campaign when every
-- batch has settled. Returns {reserve_from, reserve_to, campaign state}; with `batch`, the batch
-- remembers the range it reserved (field tu) so a redelivered task can re-enqueue it.
local function reserve_and_complete(campaign, batch, now_s)
  local c = redis.call('HMGET', campaign, 'state', 'enqueued', 'settled', 'batches', 'window', 'parked')
  local state, enqueued, settled = c[1], tonumber(c[2]), tonumber(c[3])
  local batches, window, parked = tonumber(c[4]), tonumber(c[5]), tonumber(c[6] or '0')
  local a, b = 0, 0
  if (state == S.RUNNING or state == S.QUEUED) and enqueued < batches then
    -- Batches parked for their send window do not hold a queue slot.
    local free = window - (enqueued - settled - parked)
    if free > 0 then
      a = enqueued
      b = math.min(batches, enqueued + free)
      redis.call('HSET', campaign, 'enqueued', b)
      if batch then redis.call('HSET', batch, 'tu', a .. ':' .. b) end
    end
  end
  -- A campaign whose list is still loading (dispatcher.sending.loading) is never complete.
  local loading = redis.call('HGET', campaign, 'loading') == '1'
  if settled >= batches and not loading and set_state(campaign, S.COMPLETED, 'finished_at', now_s, 'reason', '') then
    state = S.COMPLETED
  end
  return {a, b, state}
end
