-- Write message records and move the batch on, atomically with the campaign counters.
-- KEYS: campaign, batch, ledger.
-- ARGV: token, otherwise (batch state when not all terminal: p or u), error, posted (0/1),
--       failed attempt (0/1), give up (0/1), max consecutive failures, streak (ok, failed or ''),
--       then index, record pairs (record '-' takes an unknown message back to pending:
--       reconciliation proved it was not sent).
-- -> {batch state, reserve_from, reserve_to, campaign state}, batch state 'stale' when the
--    token is no longer the batch's: then only terminal records were added, nothing else changed.
local campaign, batch, ledger = KEYS[1], KEYS[2], KEYS[3]
local token, otherwise, err, posted = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local failed_attempt, give_up, max_failures, streak = ARGV[5] == '1', ARGV[6] == '1', tonumber(ARGV[7]), ARGV[8]
local FIRST_PAIR = 9

local _, now_s = now_parts()
local holder = redis.call('HGET', batch, 'tok') == token
for i = FIRST_PAIR, #ARGV, 2 do
  local index, record = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', ledger, index)
  local oc = old and string.sub(old, 1, 1)
  local nc = string.sub(record, 1, 1)
  -- A stale holder may still say what became of a message (it was sent, it was rejected), and nothing else.
  if not (oc and TERMINAL[oc]) and (holder or TERMINAL[nc]) then
    if oc == CODE.unknown then redis.call('HINCRBY', campaign, COUNTER[CODE.unknown], -1) end
    if record == '-' then
      redis.call('HDEL', ledger, index)
    else
      redis.call('HSET', ledger, index, record)
      redis.call('HINCRBY', campaign, COUNTER[nc], 1)
    end
  end
end
if not holder then return {'stale', 0, 0, redis.call('HGET', campaign, 'state') or ''} end

local done = 0
for _, v in ipairs(redis.call('HVALS', ledger)) do
  if TERMINAL[string.sub(v, 1, 1)] then done = done + 1 end
end
local size = tonumber(redis.call('HGET', batch, 'size'))
local st = otherwise
if done >= size then st = ST.DONE end
redis.call('HSET', batch, 'st', st, 'rc', st == ST.UNKNOWN and '1' or '0', 'lease', '0', 'tok', '', 'ut', now_s)
if err ~= '' then redis.call('HSET', batch, 'err', err) end
if posted then redis.call('HINCRBY', batch, 'att', 1) end
if failed_attempt then redis.call('HINCRBY', batch, 'fails', 1) end
if streak == 'ok' then
  redis.call('HSET', campaign, 'consec_fail', 0)
elseif streak == 'failed' then
  if redis.call('HINCRBY', campaign, 'consec_fail', 1) >= max_failures then
    set_state(campaign, S.PAUSED, 'reason', 'consecutive_failures')
  end
end
redis.call('HSET', campaign, 'updated_at', now_s)
if st == ST.PENDING and redis.call('HGET', campaign, 'state') == S.CANCELLED then
  -- Cancelled while this batch was in flight: nobody will send the rest, so it ends cancelled now.
  cancel_rest(campaign, batch, ledger)
  st = ST.DONE
end
local r = {0, 0, redis.call('HGET', campaign, 'state')}
if (st == ST.DONE or give_up) and redis.call('HGET', batch, 'settled') ~= '1' then
  redis.call('HSET', batch, 'settled', '1')
  redis.call('HINCRBY', campaign, 'settled', 1)
  r = reserve_and_complete(campaign, batch, now_s)
elseif st == ST.DONE then
  r = reserve_and_complete(campaign, nil, now_s)
end
return {st, r[1], r[2], r[3]}
