-- busy: how much work a queue still has, read in one step so that no job can move between
-- two reads unseen (a retry promoted from the delayed set to a stream between a stream count
-- and a delayed count would be counted by neither, and a burst worker would stop early).
-- KEYS: the queue's streams, then its delayed sets (one each per priority, same order)
-- ARGV[1] due horizon ms (delayed jobs due later do not count)
-- returns: entries in the streams (queued or pending) + delayed jobs due by the horizon
local n = #KEYS / 2
local total = 0
for i = 1, n do
  total = total + redis.call('XLEN', KEYS[i])
  total = total + redis.call('ZCOUNT', KEYS[n + i], '-inf', ARGV[1])
end
return total
