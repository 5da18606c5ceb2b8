-- start: mark a batch of read entries as running, and drop those cancelled while queued.
-- KEYS pairs: stream i, job hash i
-- ARGV[1] group, ARGV[2] worker (consumer name), ARGV[3] now ms,
-- ARGV then 2 per entry: entry id, attempt
-- returns per entry: 1 run it, 0 skip it (cancelled: acked and deleted here)
local out = {}
for i = 1, #KEYS / 2 do
  local stream, job = KEYS[2 * i - 1], KEYS[2 * i]
  local id, attempt = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local state = redis.call('HGET', job, 'state')
  if state == 'cancelled' then
    if redis.call('XACK', stream, ARGV[1], id) == 1 then redis.call('XDEL', stream, id) end
    table.insert(out, 0)
  else
    if state then
      redis.call('HSET', job, 'state', 'running', 'started_ms', ARGV[3], 'worker', ARGV[2],
        'attempt', attempt, 'entry', id)
    end
    table.insert(out, 1)
  end
end
return out
