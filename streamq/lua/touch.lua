-- touch: refresh the lease of a live consumer's entries so the reaper leaves them alone.
-- XCLAIM to the same owner with JUSTID resets idle time without bumping the delivery counter.
-- KEYS[1] stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] only entries idle at least this many ms, ARGV[4] count
-- returns: number of entries refreshed
local pend = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[4], ARGV[2])
if #pend == 0 then
  return 0
end
local args = {}
for i, p in ipairs(pend) do args[i] = p[1] end
table.insert(args, 'JUSTID')
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(args))
return #pend
