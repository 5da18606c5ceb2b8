-- cancel: stop a job. Queued, scheduled or retrying: marked cancelled at once (a worker that
-- reads its entry drops it). Running: flagged, and its id added to the cancels set that the
-- pool's supervisor watches to stop the process running it.
-- KEYS[1] job hash, KEYS[2] cancels set
-- ARGV[1] job id, ARGV[2] now ms, ARGV[3] record ttl ms, ARGV[4] done channel
-- returns: the outcome: cancelled, cancelling, or the final state it already had, or unknown
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown' end
if state == 'queued' or state == 'scheduled' or state == 'retrying' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_ms', ARGV[2])
  -- A scheduled entry stays in its delayed set until due: the record must outlive that, or
  -- the worker that reads the entry would find no record and run it.
  local ttl = tonumber(ARGV[3])
  local due = tonumber(redis.call('HGET', KEYS[1], 'due_ms') or 0)
  if due > tonumber(ARGV[2]) then ttl = ttl + due - tonumber(ARGV[2]) end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PUBLISH', ARGV[4], 'cancelled')
  return 'cancelled'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested_ms', ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[1])
  return 'cancelling'
end
return state
