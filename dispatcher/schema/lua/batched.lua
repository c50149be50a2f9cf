-- Run one script once per call of a batch (see dispatcher.delivery.batched), each in pcall so one
-- failing call does not fail the others. dispatcher.schema.scripts.batched puts the script's text
-- in `one`, in place of its body line.
-- KEYS: the keys of every call, in order.
-- ARGV: number of calls, then per call: its number of keys, its number of args, its args.
-- -> one reply per call; a failed call's reply is an error.
local calls = tonumber(ARGV[1])

local function one(KEYS, ARGV)
  -- BODY
end
local out, k, a = {}, 0, 2
for i = 1, calls do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local keys, argv = {}, {}
  for j = 1, nk do keys[j] = KEYS[k + j] end
  for j = 1, na do argv[j] = ARGV[a + 1 + j] end
  k, a = k + nk, a + 2 + na
  local ok, reply = pcall(one, keys, argv)
  if not ok then
    reply = {err = type(reply) == 'table' and reply.err or tostring(reply)}
  elseif reply == nil then
    reply = false
  end
  out[i] = reply
end
return out
