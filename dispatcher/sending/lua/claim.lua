-- Claim a batch for sending or reconciling, holding it for a lease.
-- KEYS: campaign, batch, ledger.  ARGV: lease (µs).
-- -> {'missing'} | {'done', reserved 'a:b'} | {'busy', µs left} | {'skip', campaign state}
--    | {mode, rc, attempts, payload, fails, ledger pairs, send_window, expires_at, time zones}
local campaign, batch, ledger = KEYS[1], KEYS[2], KEYS[3]
local lease_us = tonumber(ARGV[1])

local now, now_s = now_parts()
local state = redis.call('HGET', campaign, 'state')
local b = redis.call('HMGET', batch, 'st', 'lease', 'rc', 'att', 'tu', 'fails')
local st, lease, rc, attempts, reserved, fails = b[1], tonumber(b[2] or '0'), b[3] or '0', b[4], b[5], b[6]
if not state or not st then return {'missing'} end
if st == ST.DONE then return {'done', reserved or ''} end
if st == ST.IN_FLIGHT and lease > now then return {'busy', lease - now} end
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
redis.call('HSET', batch, 'st', ST.IN_FLIGHT, 'lease', string.format('%d', now + lease_us), 'rc', '1')
local c = redis.call('HMGET', campaign, 'send_window', 'expires_at')
return {mode, rc, attempts or '0', redis.call('HGET', batch, 'p'), fails or '0', redis.call('HGETALL', ledger),
        c[1] or '', c[2] or '', redis.call('HGET', batch, 'tz') or ''}
