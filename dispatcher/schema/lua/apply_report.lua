-- Apply one delivery report (see dispatcher.delivery.reports), only to a message recorded as sent
-- under the same Instasent id: keep it when it wins over the one kept, and move the
-- delivered/undelivered counters on a change of class. A report never writes a send record.
-- KEYS: campaign, delivery hash, ledger, telemetry hash; when the report is taken from the hold
--       (dispatcher.delivery.held) also the held hash and its index.
-- ARGV: index, status, eventAt (as sent), code, class ('d', 'u' or '' when not final), Instasent id
--       (as a ledger's unpacked record keeps it), eventAt in Unix µs (-1: unknown), rank, the id as a
--       packed record keeps it ('' when it does not pack); from the hold also the held field.
-- -> 'missing' (no such campaign) | 'unsent' (no send record yet, or an unknown one: hold it) |
--    'mismatch' (another id was recorded, or the message was recorded as not sent: refused and
--    counted) | 'duplicate' | 'stale' | 'applied'; from the hold also 'gone' (another process took it).
-- A report from the hold leaves it once decided (applied, duplicate, stale or mismatch).
local campaign, delivery, ledger, telemetry, held, held_at = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local index, status, event_at, error_code, class = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local instasent_id, event_us, rank, packed_id, held_field = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]

if held and redis.call('HEXISTS', held, held_field) == 0 then return 'gone' end
if redis.call('EXISTS', campaign) == 0 then return 'missing' end
local record = redis.call('HGET', ledger, index)
local record_code = record and string.sub(record, 1, 1)
if not record or record_code == CODE.unknown then return 'unsent' end
local function decided(outcome)
  if held then
    redis.call('HDEL', held, held_field)
    redis.call('ZREM', held_at, held_field)
  end
  return outcome
end
local function refused()
  redis.call('HINCRBY', telemetry, REFUSED.mismatch, 1)
  return decided('mismatch')
end
if record_code ~= CODE.sent then return refused() end
-- The id the send recorded: '{code}|{attempts}|{id}', or packed '{code}{attempts}:{id in base64}'
-- (dispatcher.sending.ledger), compared in the form it is kept in.
local recorded_id
if string.sub(record, 2, 2) == '|' then
  recorded_id = string.match(record, '^[^|]*|[^|]*|(.*)$') or ''
  if recorded_id ~= '' and recorded_id ~= instasent_id then return refused() end
else
  recorded_id = string.match(record, ':(.*)$') or ''
  if packed_id == '' or recorded_id ~= packed_id then return refused() end
end
local value = status .. '|' .. event_at .. '|' .. error_code .. '|' .. event_us .. '|' .. rank
-- A send proven by a 'clientId already used' answer has no id: the first report kept names it
-- (a sixth field), and a later report must carry the same.
local named_id = string.gsub(instasent_id, '|', '')
if recorded_id == '' then value = value .. '|' .. named_id end
local old = redis.call('HGET', delivery, index)
local old_class = ''
if old then
  if old == value then return decided('duplicate') end
  local f = {}
  for part in string.gmatch(old .. '|', '([^|]*)|') do f[#f + 1] = part end
  if recorded_id == '' and (f[6] or '') ~= '' and f[6] ~= named_id then return refused() end
  local old_status, old_t, old_rank = f[1], tonumber(f[4] or '') or -2, tonumber(f[5] or '') or -1
  old_class = DCLASS[old_status] or ''
  local new_t, new_rank = tonumber(event_us), tonumber(rank)
  -- Compare (final, time, rank, status): the report that is greater wins.
  local old_final, new_final = old_class ~= '', class ~= ''
  if old_final ~= new_final then
    if old_final then return decided('stale') end
  elseif old_t ~= new_t then
    if old_t > new_t then return decided('stale') end
  elseif old_rank ~= new_rank then
    if old_rank > new_rank then return decided('stale') end
  elseif old_status == status then
    return decided('duplicate')
  elseif old_status > status then
    return decided('stale')
  end
end
redis.call('HSET', delivery, index, value)
if old_class ~= class then
  if DCOUNTER[old_class] then redis.call('HINCRBY', campaign, DCOUNTER[old_class], -1) end
  if DCOUNTER[class] then redis.call('HINCRBY', campaign, DCOUNTER[class], 1) end
end
return decided('applied')
