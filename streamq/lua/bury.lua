-- bury: move an entry to the dead-letter stream: ack + delete + XADD dead, in one step.
-- KEYS[1] stream, KEYS[2] dead-letter stream
-- ARGV[1] group, ARGV[2] entry id, ARGV[3..] field/value pairs of the dead-letter entry
-- returns: 1 buried, 0 lease lost (the reaper already moved it; nothing written)
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
return 1
