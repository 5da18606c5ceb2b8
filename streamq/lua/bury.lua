-- bury: move an entry to the dead-letter stream: ack + delete + XADD dead, and mark the job
-- dead (with its error, an expiry, and a word to result waiters), in one step.
-- Counted as 'dead' in the queue's per-minute throughput hash.
-- KEYS[1] stream, KEYS[2] dead-letter stream, KEYS[3] job hash (may not exist),
-- KEYS[4] this minute's throughput hash
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] now ms, ARGV[4] record ttl ms, ARGV[5] done channel,
-- ARGV[6] throughput hash ttl ms, ARGV[7..] field/value pairs of the dead-letter entry
-- returns: 1 buried, 0 lease lost (the reaper already moved it; nothing written)
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
local dead_id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 7))
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], 'state', 'dead', 'finished_ms', ARGV[3], 'dead_id', dead_id)
  for i = 7, #ARGV, 2 do
    local f = ARGV[i]
    if f == 'reason' or f == 'error_type' or f == 'error_message' or f == 'traceback' then
      redis.call('HSET', KEYS[3], f, ARGV[i + 1])
    end
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  redis.call('PUBLISH', ARGV[5], 'dead')
end
redis.call('HINCRBY', KEYS[4], 'dead', 1)
redis.call('PEXPIRE', KEYS[4], ARGV[6])
return 1
