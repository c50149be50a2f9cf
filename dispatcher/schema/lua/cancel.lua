-- Cancel a batch nobody is sending: every message without a terminal record becomes cancelled.
-- A batch in flight is left to its holder, whose record cancels what it leaves pending.
-- KEYS: campaign, batch, ledger.  -> number of messages marked cancelled.
local campaign, batch, ledger = KEYS[1], KEYS[2], KEYS[3]

local b = redis.call('HMGET', batch, 'st', 'rc')
if b[1] ~= ST.PENDING or b[2] == '1' then return 0 end
return cancel_rest(campaign, batch, ledger)
