-- Claim a batch for sending or reconciling, holding it for a lease, under a new fencing token.
-- KEYS: campaign, batch, ledger, payload (the batch's compressed messages), and optionally the bulk
--       lane's request TAT, message TAT and pause, the global suppression set and the version of
--       the suppression sets, and (optionally) the campaign's account's own suppression set.
-- ARGV: lease (µs), and with the lane: µs between requests, µs per message, µs a slot may be booked ahead.
-- -> {'missing'} | {'done', reserved 'a:b'} | {'busy', µs left} | {'skip', campaign state}
--    | {mode, rc, attempts, payload, fails, ledger pairs, send_window, expires_at, time zones, token,
--       check suppression ('1'/'0'), slot (see slot.lua; '' when none was asked for)}
--
-- With the lane, a claim that will send at once (no reconciliation, no send window, not expired)
-- takes its rate-limit slot here, saving a round trip; a slot so taken and then not used (every
-- number opted out) only leaves the lane a little slower. The suppression lists need checking
-- only when one of them is not empty and they have grown since the campaign's preflight checked them.
--
-- Redis restarted from its append-only file may have lost its last second of writes, including
-- a claim whose POST went out; so may a replica promoted by a failover (replication is
-- asynchronous). So a batch last touched in another era (its `inc` is not `server_era()`, see the
-- prelude) is reconciled before anything is sent again, and is not claimed until a lease has
-- passed since the restart or the promotion (a POST begun before it has ended by then). A restart
-- is dated by the server's uptime; a promotion, which INFO does not date, by the first claim of
-- the campaign that saw the new era (kept in the campaign's `era` and `era_at`): never earlier
-- than the promotion itself, so the wait is never short.
local campaign, batch, ledger, payload = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local request_tat, message_tat, pause, suppressed, suppressed_version = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local account_suppressed = KEYS[10]
local lease_us = tonumber(ARGV[1])
local req_step, msg_step, ahead_us = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local now, now_s = now_parts()
local state = redis.call('HGET', campaign, 'state')
local b = redis.call('HMGET', batch, 'st', 'lease', 'rc', 'att', 'tu', 'fails', 'inc')
local st, lease, rc, attempts, reserved, fails = b[1], tonumber(b[2] or '0'), b[3] or '0', b[4], b[5], b[6]
if not state or not st then return {'missing'} end
if st == ST.DONE then return {'done', reserved or ''} end
if st == ST.IN_FLIGHT and lease > now then return {'busy', lease - now} end
local run_id, uptime_us, promoted = server_era()
if b[7] ~= run_id then
  local since_us = uptime_us
  if promoted then
    local seen = redis.call('HMGET', campaign, 'era', 'era_at')
    if seen[1] ~= run_id then
      seen[2] = string.format('%d', now)
      redis.call('HSET', campaign, 'era', run_id, 'era_at', seen[2])
    end
    since_us = now - tonumber(seen[2])
  end
  if since_us < lease_us then return {'busy', lease_us - since_us} end
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
local c = redis.call('HMGET', campaign, 'send_window', 'expires_at', 'supp_v')
local check, slot = '1', ''
if suppressed_version then
  local empty = redis.call('SCARD', suppressed) == 0 and
                (not account_suppressed or account_suppressed == suppressed or
                 redis.call('SCARD', account_suppressed) == 0)
  if empty or (c[3] and (redis.call('GET', suppressed_version) or '0') == c[3]) then
    check = '0'
  end
  if mode == 'send' and rc == '0' and not c[1] and not (c[2] and tonumber(c[2]) * 1000000 <= now) then
    local messages = tonumber(redis.call('HGET', batch, 'size')) - redis.call('HLEN', ledger)
    slot = take_slot(request_tat, message_tat, pause, req_step, msg_step, messages, ahead_us)
  end
end
-- A batch stored before its messages had a key of their own keeps them in its hash.
local messages = redis.call('GET', payload) or redis.call('HGET', batch, 'p')
return {mode, rc, attempts or '0', messages, fails or '0', redis.call('HGETALL', ledger),
        c[1] or '', c[2] or '', redis.call('HGET', batch, 'tz') or '', token, check, slot}
