-- Reserve batches to fill the campaign's queue window.
-- KEYS: campaign.  -> {reserve_from, reserve_to, campaign state}
local campaign = KEYS[1]

local _, now_s = now_parts()
return reserve_and_complete(campaign, nil, now_s)
