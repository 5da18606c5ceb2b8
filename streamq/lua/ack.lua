-- ack: acknowledge finished entries and delete them, in one step.
-- Deleting only what this call acknowledged means an entry that the reaper already moved
-- (its lease was lost) is never touched twice, and XDEL never runs without XACK (no ghost PEL).
-- KEYS[1] stream
-- ARGV[1] group; ARGV[2..] entry ids
-- returns: number of entries acknowledged (fewer than given = some were reclaimed meanwhile)
local acked = 0
for i = 2, #ARGV do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[i])
    acked = acked + 1
  end
end
return acked
