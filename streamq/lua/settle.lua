-- settle: record what the reaper did to jobs it moved (requeued or dead), only where the
-- record still points at the entry it moved, so a worker that already started the new copy
-- is never overwritten.
-- KEYS: job hashes
-- ARGV[1] now ms, ARGV[2] record ttl ms, then 4 per job: old entry id, new state
-- (queued or dead), done channel, dead-letter id ('' for queued)
-- returns: number of records updated
local n = 0
for i = 1, #KEYS do
  local a = 3 + 4 * (i - 1)
  if redis.call('HGET', KEYS[i], 'entry') == ARGV[a] then
    local state = ARGV[a + 1]
    redis.call('HSET', KEYS[i], 'state', state)
    if state == 'queued' then
      -- Requeued: its worker is gone, and that run's progress with it ('' reads as unset).
      redis.call('HSET', KEYS[i], 'progress', '', 'note', '', 'worker', '')
    end
    if state == 'dead' then
      redis.call('HSET', KEYS[i], 'finished_ms', ARGV[1], 'reason', 'max_deliveries',
        'error_type', 'WorkerLost', 'dead_id', ARGV[a + 3])
      redis.call('PEXPIRE', KEYS[i], ARGV[2])
      redis.call('PUBLISH', ARGV[a + 2], 'dead')
    end
    n = n + 1
  end
end
return n
