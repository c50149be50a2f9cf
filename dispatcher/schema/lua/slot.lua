-- Library: the shared GCRA limiter. Take the next request slot of a lane (and, with a message
-- cap, room for `messages` messages), booking it when it starts at most `ahead_us` from now.
-- -> 0 when taken now, -µs when the slot starting that much later was booked (send only then),
--    else the µs to wait before asking again (the lane is paused, or the slot is further away).
local function take_slot(request_tat_key, message_tat_key, pause_key, req_step, msg_step, messages, ahead_us)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local paused = tonumber(redis.call('GET', pause_key) or '0')
  if paused > now then return paused - now end
  local req_tat = math.max(tonumber(redis.call('GET', request_tat_key) or '0'), now)
  local msg_tat = math.max(tonumber(redis.call('GET', message_tat_key) or '0'), now)
  local start = math.max(req_tat, msg_tat)
  if start - now > ahead_us then return start - now end
  redis.call('SET', request_tat_key, string.format('%d', start + req_step), 'PX', 120000)
  if msg_step > 0 then
    redis.call('SET', message_tat_key, string.format('%d', start + msg_step * messages), 'PX', 120000)
  end
  return now - start
end
