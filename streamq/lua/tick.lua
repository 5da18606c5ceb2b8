-- tick: fire one tick of a periodic schedule. Compare-and-set: only if the stored next fire
-- time, definition hash and last job are still what the caller read does it advance the next
-- fire time and enqueue the tick's job (record + XADD, or ZADD when jittered: the shape of
-- enqueue.lua). Any number of pools may race on a tick; exactly one wins, and a job id that
-- already has a record (the tick fired before, e.g. from state a failover rolled back) is
-- never enqueued again.
-- KEYS[1] schedule hash, KEYS[2] next-fire zset, KEYS[3] job hash, KEYS[4] target (stream, or
--   delayed set when due > 0), KEYS[5] previous job's hash (KEYS[3] when there is none)
-- ARGV[1] schedule id, ARGV[2] expected next ms (-1: a manual run: no check, no advance),
--   ARGV[3] new next ms (-1: never again), ARGV[4] now ms, ARGV[5] job id ('': advance only),
--   ARGV[6] payload, ARGV[7] due ms (0 = now), ARGV[8] task, ARGV[9] overlap skip 1/0,
--   ARGV[10] expected definition hash, ARGV[11] expected last job id ('' if none),
--   ARGV[12] tick ms, ARGV[13] most ms the tick may be ahead of this server's clock
-- returns {status, detail}: {'fired', entry id or ''}, {'stale', ''}, {'gone', ''},
--   {'early', server ms}, {'overlap', previous job's state}, {'duplicate', existing state},
--   {'advanced', ''}
local sched, nexts, job, target, prev = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, expected, new_next = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now, job_id, due = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[7])
if redis.call('EXISTS', sched) == 0 then return {'gone', ''} end
if expected >= 0 then
  if redis.call('HGET', sched, 'hash') ~= ARGV[10]
    or tonumber(redis.call('ZSCORE', nexts, id) or -2) ~= expected
    or (redis.call('HGET', sched, 'last_job') or '') ~= ARGV[11] then
    return {'stale', ''}
  end
  -- A pool whose clock runs ahead must not fire ticks early (nor, under missed="skip", pass
  -- over real ticks as missed): the server's clock is the one all pools share.
  local t = redis.call('TIME')
  local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(ARGV[12]) > server_ms + tonumber(ARGV[13]) then
    return {'early', tostring(server_ms)}
  end
  if new_next >= 0 then
    redis.call('ZADD', nexts, new_next, id)
  else
    redis.call('ZREM', nexts, id)
  end
  redis.call('HSET', sched, 'next_ms', new_next)
end
if job_id == '' then return {'advanced', ''} end
local live = {queued = true, scheduled = true, running = true, retrying = true}
if ARGV[9] == '1' and prev ~= job then
  local prev_state = redis.call('HGET', prev, 'state')
  if prev_state and live[prev_state] then
    redis.call('HINCRBY', sched, 'skipped', 1)
    return {'overlap', prev_state}
  end
end
local state = redis.call('HGET', job, 'state')
if state then return {'duplicate', state} end
local entry = ''
if due > 0 then
  redis.call('HSET', job, 'id', job_id, 'state', 'scheduled', 'task', ARGV[8], 'attempt', 0,
    'enqueued_ms', now, 'due_ms', due)
  redis.call('ZADD', target, due, ARGV[6])
else
  redis.call('HSET', job, 'id', job_id, 'state', 'queued', 'task', ARGV[8], 'attempt', 0,
    'enqueued_ms', now)
  entry = redis.call('XADD', target, '*', 'j', ARGV[6])
end
redis.call('HSET', sched, 'last_job', job_id, 'last_tick_ms', ARGV[12], 'last_fired_ms', now)
redis.call('HINCRBY', sched, 'fired', 1)
return {'fired', entry}
