-- Apply one delivery report (see dispatcher.delivery.reports): keep it when it wins over the one
-- kept, move the delivered/undelivered counters on a change of class, and make a missing or
-- unknown send record sent (the report proves Instasent accepted the message).
-- KEYS: campaign, delivery hash, ledger.
-- ARGV: index, status, eventAt (as sent), code, class ('d', 'u' or '' when not final), Instasent id,
--       eventAt in Unix µs (-1: unknown), rank.
-- -> 'missing' | 'duplicate' | 'stale' | 'applied' | 'applied+sent'
local campaign, delivery, ledger = KEYS[1], KEYS[2], KEYS[3]
local index, status, event_at, error_code, class = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local instasent_id, event_us, rank = ARGV[6], ARGV[7], ARGV[8]

if redis.call('EXISTS', campaign) == 0 then return 'missing' end
local value = status .. '|' .. event_at .. '|' .. error_code .. '|' .. event_us .. '|' .. rank
local old = redis.call('HGET', delivery, index)
local old_class = ''
if old then
  if old == value then return 'duplicate' end
  local f = {}
  for part in string.gmatch(old .. '|', '([^|]*)|') do f[#f + 1] = part end
  local old_status, old_t, old_rank = f[1], tonumber(f[4] or '') or -2, tonumber(f[5] or '') or -1
  old_class = DCLASS[old_status] or ''
  local new_t, new_rank = tonumber(event_us), tonumber(rank)
  -- Compare (final, time, rank, status): the report that is greater wins.
  local old_final, new_final = old_class ~= '', class ~= ''
  if old_final ~= new_final then
    if old_final then return 'stale' end
  elseif old_t ~= new_t then
    if old_t > new_t then return 'stale' end
  elseif old_rank ~= new_rank then
    if old_rank > new_rank then return 'stale' end
  elseif old_status == status then
    return 'duplicate'
  elseif old_status > status then
    return 'stale'
  end
end
redis.call('HSET', delivery, index, value)
if old_class ~= class then
  if DCOUNTER[old_class] then redis.call('HINCRBY', campaign, DCOUNTER[old_class], -1) end
  if DCOUNTER[class] then redis.call('HINCRBY', campaign, DCOUNTER[class], 1) end
end
local record = redis.call('HGET', ledger, index)
local record_code = record and string.sub(record, 1, 1)
if not record or record_code == CODE.unknown then
  if record_code == CODE.unknown then redis.call('HINCRBY', campaign, COUNTER[CODE.unknown], -1) end
  -- The unpacked form of a sent record with no attempts of ours counted (dispatcher.sending.ledger).
  redis.call('HSET', ledger, index, CODE.sent .. '|0|' .. instasent_id)
  redis.call('HINCRBY', campaign, COUNTER[CODE.sent], 1)
  return 'applied+sent'
end
return 'applied'
