-- cancel: stop a job. Queued, scheduled or retrying: marked cancelled at once (a worker that
-- reads its entry drops it), and a waiting entry leaves its delayed set so it no longer counts
-- as delayed. Running: flagged, and its id added to the cancels set that the pool's
-- supervisor watches to stop the process running it.
-- KEYS[1] job hash, KEYS[2] cancels set, KEYS[3..] the queue's delayed sets (one per priority)
-- ARGV[1] job id, ARGV[2] now ms, ARGV[3] record ttl ms, ARGV[4] done channel,
-- ARGV[5] the bytes that follow the map header in this job's payload (codec.id_marker)
-- returns: the outcome: cancelled, cancelling, or the final state it already had, or unknown
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown' end

-- The delayed member of a job is its payload, scored with the record's due_ms: look only at
-- members with that score (usually one) and remove the one that starts with this job's id
-- (found within the first bytes, so never an argument that happens to hold the same text).
local function unschedule(due)
  for k = 3, #KEYS do
    for _, member in ipairs(redis.call('ZRANGE', KEYS[k], due, due, 'BYSCORE')) do
      local at = string.find(member, ARGV[5], 1, true)
      if at and at <= 4 then  -- after a fixmap (1 byte) or map16 (3 bytes) header
        redis.call('ZREM', KEYS[k], member)
        return true
      end
    end
  end
  return false
end

if state == 'queued' or state == 'scheduled' or state == 'retrying' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_ms', ARGV[2])
  local ttl = tonumber(ARGV[3])
  local due = tonumber(redis.call('HGET', KEYS[1], 'due_ms') or 0)
  if due > tonumber(ARGV[2]) and not unschedule(due) then
    -- Still in its delayed set (not found: promoted meanwhile, or written by other code):
    -- the record must outlive the entry, or a worker would find no record and run it.
    ttl = ttl + due - tonumber(ARGV[2])
  end
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
