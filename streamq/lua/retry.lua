-- retry: move a failed entry to its next attempt: ack + delete + (ZADD delayed | XADD stream).
-- Nothing is scheduled when the entry is no longer pending for the group: the reaper took it
-- back, and its new copy is the one that will run.
-- KEYS[1] stream, KEYS[2] delayed set
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] next attempt's payload, ARGV[4] due ms, ARGV[5] now ms
-- returns: 1 scheduled, 0 lease lost
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
if tonumber(ARGV[4]) <= tonumber(ARGV[5]) then
  redis.call('XADD', KEYS[1], '*', 'j', ARGV[3])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
return 1
