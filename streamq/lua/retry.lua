-- retry: move a failed entry to its next attempt: ack + delete + (ZADD delayed | XADD stream),
-- and record the error on the job, in one step. Nothing is scheduled when the entry is no
-- longer pending for the group: the reaper took it back, and its new copy is the one that runs.
-- KEYS[1] stream, KEYS[2] delayed set, KEYS[3] job hash
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] next attempt's payload, ARGV[4] due ms, ARGV[5] now ms,
-- ARGV[6] error type, ARGV[7] error message, ARGV[8] traceback, ARGV[9] done channel,
-- ARGV[10] record ttl ms
-- returns: 1 scheduled, 0 lease lost, 2 not retried: its cancel was asked while it ran
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('HEXISTS', KEYS[3], 'cancel_requested_ms') == 1 then
  redis.call('HSET', KEYS[3], 'state', 'cancelled', 'finished_ms', ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[10])
  redis.call('PUBLISH', ARGV[9], 'cancelled')
  return 2
end
local now_due = tonumber(ARGV[4]) <= tonumber(ARGV[5])
if now_due then
  redis.call('XADD', KEYS[1], '*', 'j', ARGV[3])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], 'state', now_due and 'queued' or 'retrying', 'due_ms', ARGV[4],
    'error_type', ARGV[6], 'error_message', ARGV[7], 'traceback', ARGV[8])
end
return 1
