-- Store the batches of a campaign being created (see batch.lua).
-- KEYS: per batch: its hash, its payload.
-- ARGV: Redis run id (the batches' inc), then per batch: size, blob, time zones ('' for none).
-- -> the number of batches stored.
local run_id = ARGV[1]

local at = 2
for k = 1, #KEYS, 2 do
  create_batch(KEYS[k], KEYS[k + 1], ARGV[at], ARGV[at + 1], ARGV[at + 2], run_id)
  at = at + 3
end
return #KEYS / 2
