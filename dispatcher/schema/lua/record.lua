-- Write message records and move the batch on, atomically with the campaign counters.
-- KEYS: campaign, batch, ledger.
-- ARGV: token, otherwise (batch state when not all terminal: p or u), error, posted (0/1),
--       failed attempt (0/1), give up (0/1), max consecutive failures, streak (ok, failed or ''),
--       then the records, one argument: lines 'index:record' joined by newlines (record '-' takes
--       an unknown message back to pending: reconciliation proved it was not sent). One argument,
--       not 200: packing 200 arguments was most of a worker's cost of the call.
-- -> {batch state, reserve_from, reserve_to, campaign state}, batch state 'stale' when the
--    token is no longer the batch's: then only terminal records were added, nothing else changed.
local campaign, batch, ledger = KEYS[1], KEYS[2], KEYS[3]
local token, otherwise, err, posted = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local failed_attempt, give_up, max_failures, streak = ARGV[5] == '1', ARGV[6] == '1', tonumber(ARGV[7]), ARGV[8]
local records = ARGV[9] or ''

local _, now_s = now_parts()
local holder = redis.call('HGET', batch, 'tok') == token
-- Parse the records, read every old record in one HMGET, write in one HSET (and one HDEL) and move
-- each counter once: three calls per message made this script most of Redis's work per batch.
local indexes, values = {}, {}
local pos, length = 1, #records
while pos <= length do
  local stop = string.find(records, '\n', pos, true) or (length + 1)
  local colon = string.find(records, ':', pos, true)
  indexes[#indexes + 1] = string.sub(records, pos, colon - 1)
  values[#values + 1] = string.sub(records, colon + 1, stop - 1)
  pos = stop + 1
end
if #indexes > 0 then
  local olds = redis.call('HMGET', ledger, unpack(indexes))
  -- What each changed index holds as the records are applied in order (false: none), so that an
  -- index named twice (taken back to pending, then sent) sees its first change.
  local current, deltas, order = {}, {}, {}
  for k = 1, #indexes do
    local index, record = indexes[k], values[k]
    local old = current[index]
    if old == nil then old = olds[k] end
    local oc = old and string.sub(old, 1, 1)
    local nc = string.sub(record, 1, 1)
    -- A stale holder may still say what became of a message (it was sent, it was rejected), and nothing else.
    if not (oc and TERMINAL[oc]) and (holder or TERMINAL[nc]) then
      if oc == CODE.unknown then deltas[CODE.unknown] = (deltas[CODE.unknown] or 0) - 1 end
      if current[index] == nil then order[#order + 1] = index end
      if record == '-' then
        current[index] = false
      else
        current[index] = record
        deltas[nc] = (deltas[nc] or 0) + 1
      end
    end
  end
  local sets, dels = {}, {}
  for _, index in ipairs(order) do
    local value = current[index]
    if value then sets[#sets + 1] = index; sets[#sets + 1] = value else dels[#dels + 1] = index end
  end
  if #sets > 0 then redis.call('HSET', ledger, unpack(sets)) end
  if #dels > 0 then redis.call('HDEL', ledger, unpack(dels)) end
  for code, delta in pairs(deltas) do
    if delta ~= 0 then redis.call('HINCRBY', campaign, COUNTER[code], delta) end
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
