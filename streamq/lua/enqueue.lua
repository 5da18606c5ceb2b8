-- enqueue: record each job and add it to its stream (or delayed set), unless a job with the
-- same id is still live. Idempotent per job id, so a producer may resend after a timeout.
-- KEYS pairs: job hash i, target key i (a stream, or a delayed set when due > 0)
-- ARGV[1] now ms, ARGV[2] smallest dedup window ms for every job (a resend's)
-- ARGV then 5 per job: job id, payload, due ms (0 = now), task name, dedup window ms
-- (0: only while queued/scheduled/running/retrying; else also a finished job enqueued
-- less than that long ago)
-- returns per job: {created 1/0, entry id or state of the existing job}
-- A new record's attempt is 0: it counts attempts started, and none has yet.
local now = tonumber(ARGV[1])
local floor = tonumber(ARGV[2])
local live = {queued = true, scheduled = true, running = true, retrying = true}
local out = {}
for i = 1, #KEYS / 2 do
  local job, target = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 2 + 5 * (i - 1)
  local payload, due, task = ARGV[a + 2], tonumber(ARGV[a + 3]), ARGV[a + 4]
  local window = math.max(tonumber(ARGV[a + 5]), floor)
  local state = redis.call('HGET', job, 'state')
  local dup = false
  if state then
    dup = live[state] or (window > 0 and
      now - tonumber(redis.call('HGET', job, 'enqueued_ms') or 0) < window)
  end
  if dup then
    table.insert(out, {0, state})
  else
    if state then redis.call('DEL', job) end
    if due > 0 then
      redis.call('HSET', job, 'id', ARGV[a + 1], 'state', 'scheduled', 'task', task, 'attempt', 0,
        'enqueued_ms', now, 'due_ms', due)
      redis.call('ZADD', target, due, payload)
      table.insert(out, {1, ''})
    else
      redis.call('HSET', job, 'id', ARGV[a + 1], 'state', 'queued', 'task', task, 'attempt', 0,
        'enqueued_ms', now)
      table.insert(out, {1, redis.call('XADD', target, '*', 'j', payload)})
    end
  end
end
return out
