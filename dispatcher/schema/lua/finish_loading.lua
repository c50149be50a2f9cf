-- End a campaign's loading, if the caller still holds the loader lease.
-- KEYS: campaign, lease.
-- ARGV: token, rows read, and unless '': the exact preflight summary (JSON), expected messages, cost.
-- -> 1 when it was ours, else 0.
local campaign, lease = KEYS[1], KEYS[2]
local token, rows_read, summary, expected, cost = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

if redis.call('GET', lease) ~= token then return 0 end
redis.call('HSET', campaign, 'loading', '0', 'rows_read', rows_read)
if summary ~= '' then redis.call('HSET', campaign, 'preflight', summary, 'expected', expected, 'cost', cost) end
redis.call('DEL', lease)
return 1
