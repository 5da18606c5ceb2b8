-- start: mark a batch of read entries as running, and drop those cancelled while queued, or
-- whose cancel was asked while running and which came back (a retry, a dead worker's requeue).
-- KEYS pairs: stream i, job hash i
-- KEYS last: the cancels set
-- ARGV[1] group, ARGV[2] worker (consumer name), ARGV[3] now ms, ARGV[4] done channel prefix,
-- ARGV[5] msgpack [[entry id, attempt, job id] per entry] (one argument for the whole batch)
-- returns per entry: 1 run it, 0 skip it (cancelled: acked and deleted here)
local out = {}
local cancels = KEYS[#KEYS]
local rows = cmsgpack.unpack(ARGV[5])
for i = 1, (#KEYS - 1) / 2 do
  local stream, job = KEYS[2 * i - 1], KEYS[2 * i]
  local id, attempt, job_id = rows[i][1], rows[i][2], rows[i][3]
  local rec = redis.call('HMGET', job, 'state', 'cancel_requested_ms')
  local state = rec[1]
  local asked = state and state ~= 'cancelled' and rec[2]
  if state == 'cancelled' or asked then
    if redis.call('XACK', stream, ARGV[1], id) == 1 then redis.call('XDEL', stream, id) end
    if asked then
      redis.call('HSET', job, 'state', 'cancelled', 'finished_ms', ARGV[3])
      redis.call('SREM', cancels, job_id)
      redis.call('PUBLISH', ARGV[4] .. job_id, 'cancelled')
    end
    table.insert(out, 0)
  else
    if state then
      -- A new run: an earlier run's progress and note would be read as this one's. Emptied
      -- rather than deleted, so the documented ACL needs no HDEL; readers treat '' as unset.
      redis.call('HSET', job, 'state', 'running', 'started_ms', ARGV[3], 'worker', ARGV[2],
        'attempt', attempt, 'entry', id, 'progress', '', 'note', '')
    end
    table.insert(out, 1)
  end
end
return out
