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
