-- Claim a batch for sending or reconciling, holding it for a lease, under a new fencing token.
-- KEYS: campaign, batch, ledger.  ARGV: lease (µs).
-- -> {'missing'} | {'done', reserved 'a:b'} | {'busy', µs left} | {'skip', campaign state}
--    | {mode, rc, attempts, payload, fails, ledger pairs, send_window, expires_at, time zones, token}
--
-- Redis restarted from its append-only file may have lost its last second of writes, including
-- a claim whose POST went out. So a batch last touched by an earlier Redis process (its `inc` is
-- not this server's run_id) is reconciled before anything is sent again, and is not claimed
-- until a lease has passed since the restart (a POST begun before the crash has ended by then).
local campaign, batch, ledger = KEYS[1], KEYS[2], KEYS[3]
local lease_us = tonumber(ARGV[1])

local now, now_s = now_parts()
local state = redis.call('HGET', campaign, 'state')
local b = redis.call('HMGET', batch, 'st', 'lease', 'rc', 'att', 'tu', 'fails', 'inc')
local st, lease, rc, attempts, reserved, fails = b[1], tonumber(b[2] or '0'), b[3] or '0', b[4], b[5], b[6]
if not state or not st then return {'missing'} end
if st == ST.DONE then return {'done', reserved or ''} end
if st == ST.IN_FLIGHT and lease > now then return {'busy', lease - now} end
local info = redis.call('INFO', 'server')
local run_id = string.match(info, 'run_id:(%w+)')
if b[7] ~= run_id then
  local since_restart_us = tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) * 1000000
  if since_restart_us < lease_us then return {'busy', lease_us - since_restart_us} end
  rc = '1'
end
local mode
if state == S.QUEUED or state == S.RUNNING or (state == S.COMPLETED and rc == '1') then
  -- A completed campaign still holding unknown messages is being reconciled: resolve, then send.
  mode = 'send'
elseif state == S.CANCELLED and rc == '1' then
  mode = 'reconcile'
else
  return {'skip', state}
end
if state == S.QUEUED then set_state(campaign, S.RUNNING, 'started_at', now_s) end
local token = run_id .. ':' .. redis.call('HINCRBY', batch, 'fence', 1)
redis.call('HSET', batch, 'st', ST.IN_FLIGHT, 'lease', string.format('%d', now + lease_us), 'rc', '1',
           'tok', token, 'inc', run_id)
local c = redis.call('HMGET', campaign, 'send_window', 'expires_at')
return {mode, rc, attempts or '0', redis.call('HGET', batch, 'p'), fails or '0', redis.call('HGETALL', ledger),
        c[1] or '', c[2] or '', redis.call('HGET', batch, 'tz') or '', token}
