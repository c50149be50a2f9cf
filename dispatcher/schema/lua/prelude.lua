-- Library, prepended to every script after the generated tables (see dispatcher.schema.scripts).

-- Move the campaign hash `key` to `target` (plus extra field/value pairs) when TRANSITIONS allow it.
local function set_state(key, target, ...)
  local current = redis.call('HGET', key, 'state')
  if not (current and ALLOWED[current] and ALLOWED[current][target]) then return false end
  redis.call('HSET', key, 'state', target, ...)
  return true
end

-- Redis' clock: Unix µs (a number) and Unix s (a string with six decimals).
local function now_parts()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]), t[1] .. '.' .. string.format('%06d', t[2])
end

-- The server's era: which Redis process holds the data, and since which promotion. A restart changes
-- the run_id; a replica promoted to master keeps its run_id but records its old master's replication
-- id as master_replid2, which stays until the next promotion (or until a master without replicas
-- frees its backlog, after repl-backlog-ttl: then the era changes once more, harmlessly). A batch
-- last touched in another era may have lost its last writes. Python's ``schema.scripts.era`` must
-- spell it the same way. -> era, uptime (µs), promoted (true when the era began with a promotion)
local function server_era()
  local info = redis.call('INFO', 'server')  -- two calls: INFO takes one section before Redis 7
  local run_id = string.match(info, 'run_id:(%w+)')
  local replid2 = string.match(redis.call('INFO', 'replication'), 'master_replid2:(%w+)') or ''
  local promoted = string.match(replid2, '^0+$') == nil and replid2 ~= ''
  local uptime_us = tonumber(string.match(info, 'uptime_in_seconds:(%d+)')) * 1000000
  return promoted and (run_id .. ':' .. replid2) or run_id, uptime_us, promoted
end
