-- replay: move dead-letter entries back to the stream: XDEL dead + XADD stream + a fresh job
-- record, in one step. Only the caller whose XDEL removed the entry adds it, so two replays
-- never duplicate a job.
-- KEYS[1] dead-letter stream, KEYS[2] stream, KEYS[2 + i] job hash of move i
-- ARGV[1] now ms, then 4 per move: dead entry id, payload to enqueue, job id, task
-- ('' job id: an undecodable payload, no record)
-- returns: number replayed
local n = 0
for i = 1, #KEYS - 2 do
  local a = 2 + 4 * (i - 1)
  if redis.call('XDEL', KEYS[1], ARGV[a]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'j', ARGV[a + 1])
    if ARGV[a + 2] ~= '' then
      redis.call('DEL', KEYS[2 + i])
      redis.call('HSET', KEYS[2 + i], 'id', ARGV[a + 2], 'state', 'queued', 'task', ARGV[a + 3],
        'attempt', 0, 'enqueued_ms', ARGV[1])
    end
    n = n + 1
  end
end
return n
