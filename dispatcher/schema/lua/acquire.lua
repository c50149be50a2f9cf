-- Take a rate-limit slot (see slot.lua).
-- KEYS: request TAT, message TAT, lane pause.
-- ARGV: µs between requests, µs per message (0: no message cap), messages in this request, µs ahead.
local request_tat, message_tat, pause = KEYS[1], KEYS[2], KEYS[3]
local req_step, msg_step, messages = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ahead_us = tonumber(ARGV[4] or '0')

return take_slot(request_tat, message_tat, pause, req_step, msg_step, messages, ahead_us)
