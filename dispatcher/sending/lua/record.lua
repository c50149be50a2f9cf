-- Write message records and move the batch on, atomically with the campaign counters.
-- KEYS: campaign, batch, ledger.
-- ARGV: otherwise (batch state when not all terminal: p or u), error, posted (0/1),
--       failed attempt (0/1), give up (0/1), max consecutive failures, streak (ok, failed or ''),
--       then index, record pairs (record '-' takes an unknown message back to pending:
--       reconciliation proved it was not sent).
-- -> {batch state, reserve_from, reserve_to, campaign state}
local campaign, batch, ledger = KEYS[1], KEYS[2], KEYS[3]
local otherwise, err, posted, failed_attempt = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4] == '1'
local give_up, max_failures, streak = ARGV[5] == '1', tonumber(ARGV[6]), ARGV[7]
local FIRST_PAIR = 8

local _, now_s = now_parts()
for i = FIRST_PAIR, #ARGV, 2 do
  local index, record = ARGV[i], ARGV[i + 1]
  local old = redis.call('HGET', ledger, index)
  local oc = old and string.sub(old, 1, 1)
  if not (oc and TERMINAL[oc]) then
    if oc == CODE.unknown then redis.call('HINCRBY', campaign, COUNTER[CODE.unknown], -1) end
    if record == '-' then
      redis.call('HDEL', ledger, index)
    else
      redis.call('HSET', ledger, index, record)
      redis.call('HINCRBY', campaign, COUNTER[string.sub(record, 1, 1)], 1)
    end
  end
end
local done = 0
for _, v in ipairs(redis.call('HVALS', ledger)) do
  if TERMINAL[string.sub(v, 1, 1)] then done = done + 1 end
end
local size = tonumber(redis.call('HGET', batch, 'size'))
local st = otherwise
if done >= size then st = ST.DONE end
local rc = '0'
if st == ST.UNKNOWN then rc = '1' end
redis.call('HSET', batch, 'st', st, 'rc', rc, 'lease', '0', 'ut', now_s)
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
local r = {0, 0, redis.call('HGET', campaign, 'state')}
if (st == ST.DONE or give_up) and redis.call('HGET', batch, 'settled') ~= '1' then
  redis.call('HSET', batch, 'settled', '1')
  redis.call('HINCRBY', campaign, 'settled', 1)
  r = reserve_and_complete(campaign, batch, now_s)
end
return {st, r[1], r[2], r[3]}
