-- pause: take a schedule out of the next-fire set (paused), or put it back (resumed) with a
-- next fire time computed from now: ticks that came while paused are not caught up.
-- KEYS[1] schedule hash, KEYS[2] next-fire zset
-- ARGV[1] id, ARGV[2] next fire ms when resuming (-2: pause), ARGV[3] now ms
-- returns 'paused' | 'resumed' | 'unknown'
local sched, nexts, id, next_ms = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', sched) == 0 then return 'unknown' end
if next_ms == -2 then
  redis.call('HSET', sched, 'paused', 1, 'paused_ms', ARGV[3])
  redis.call('ZREM', nexts, id)
  return 'paused'
end
redis.call('HSET', sched, 'paused', 0, 'next_ms', next_ms)
if next_ms >= 0 then redis.call('ZADD', nexts, next_ms, id) end
return 'resumed'
