-- define: write a schedule's definition unless the stored one is identical (same content
-- hash), so pools starting with unchanged code write nothing. A changed timing (cron, interval,
-- zone) sets the next fire time afresh; any other change keeps it. A paused schedule stays
-- paused: pausing is an operator's decision, not part of the definition.
-- KEYS[1] schedule hash, KEYS[2] next-fire zset, KEYS[3] the queue's schedule id set
-- ARGV[1] id, ARGV[2] definition (msgpack), ARGV[3] content hash, ARGV[4] timing key,
--   ARGV[5] next fire ms (-1: never), ARGV[6] now ms, ARGV[7] source (code | api)
-- returns {'created' | 'updated' | 'same', previous hash or ''}
local sched, nexts, index = KEYS[1], KEYS[2], KEYS[3]
local id, next_ms = ARGV[1], tonumber(ARGV[5])
local old = redis.call('HGET', sched, 'hash')
if old == ARGV[3] then return {'same', old} end
local old_timing = redis.call('HGET', sched, 'timing')
redis.call('HSET', sched, 'def', ARGV[2], 'hash', ARGV[3], 'timing', ARGV[4],
  'source', ARGV[7], 'updated_ms', ARGV[6])
if not old then
  redis.call('HSET', sched, 'created_ms', ARGV[6], 'paused', 0)
end
redis.call('SADD', index, id)
if redis.call('HGET', sched, 'paused') ~= '1' and
  (old_timing ~= ARGV[4] or not redis.call('ZSCORE', nexts, id)) then
  if next_ms >= 0 then
    redis.call('ZADD', nexts, next_ms, id)
  else
    redis.call('ZREM', nexts, id)
  end
  redis.call('HSET', sched, 'next_ms', next_ms)
end
return {old and 'updated' or 'created', old or ''}
