-- release: hand a stopping consumer's unfinished entries back to the stream, then drop the
-- consumer if it owns nothing. Used on graceful shutdown so prefetched jobs need not wait for
-- the visibility timeout. The carried delivery count is kept, not bumped: nothing ran.
-- KEYS[1] stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] most entries to release
-- returns: {released, consumer deleted (1/0)}
local pend = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3], ARGV[2])
local released = 0
for _, p in ipairs(pend) do
  local id = p[1]
  local e = redis.call('XRANGE', KEYS[1], id, id)
  redis.call('XACK', KEYS[1], ARGV[1], id)
  if #e > 0 then
    redis.call('XDEL', KEYS[1], id)
    redis.call('XADD', KEYS[1], '*', unpack(e[1][2]))
    released = released + 1
  end
end
local left = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #left == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  return {released, 1}
end
return {released, 0}
