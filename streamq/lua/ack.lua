-- ack: record finished entries: XACK + XDEL, and the job's final state, result and expiry,
-- in one step. Only entries still pending are recorded: one the reaper already moved (its
-- lease was lost) is left to its new copy, and XDEL never runs without XACK (no ghost PEL).
-- KEYS[1] cancels set, then pairs: stream i, job hash i
-- ARGV[1] group, ARGV[2] now ms, then 5 per entry: entry id, final state (succeeded or
-- cancelled), result bytes ('' = none), record ttl ms, done channel
-- returns: number of entries acknowledged
local acked = 0
for i = 1, (#KEYS - 1) / 2 do
  local stream, job = KEYS[2 * i], KEYS[2 * i + 1]
  local a = 3 + 5 * (i - 1)
  local id, state, result, ttl, channel = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  if redis.call('XACK', stream, ARGV[1], id) == 1 then
    redis.call('XDEL', stream, id)
    acked = acked + 1
    if redis.call('EXISTS', job) == 1 then
      redis.call('HSET', job, 'state', state, 'finished_ms', ARGV[2])
      if result ~= '' then redis.call('HSET', job, 'result', result) end
      redis.call('PEXPIRE', job, ttl)
      if state == 'cancelled' then
        local jid = redis.call('HGET', job, 'id')
        redis.call('SREM', KEYS[1], jid or '')
      end
      redis.call('PUBLISH', channel, state)
    end
  end
end
return acked
