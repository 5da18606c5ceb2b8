-- ack: record finished entries of one stream: XACK + XDEL, and for tracked jobs their final
-- state, result, expiry and a word to result waiters, in one step. XDEL never runs without
-- XACK (no ghost PEL entries). Ids the group no longer holds were moved by the reaper (their
-- lease was lost) and already deleted, so deleting every id given is safe; their records are
-- written only if no newer copy has started (the record still names this entry).
-- Per-entry data comes as one msgpack blob: a worker acks hundreds of entries per call, and
-- one argument costs far less to send and unpack than five per entry.
-- KEYS[1] cancels set, KEYS[2] stream, KEYS[2 + j] job hash of tracked entry j
-- ARGV[1] group, ARGV[2] now ms, ARGV[3] done channel prefix,
-- ARGV[4] msgpack [entry ids, [[index among ids, job id, final state, result or '', ttl ms]
-- per tracked entry]]
-- returns: number of entries acknowledged (fewer than given: some leases were lost)
local blob = cmsgpack.unpack(ARGV[4])
local ids, tracked = blob[1], blob[2]
local acked = redis.call('XACK', KEYS[2], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[2], unpack(ids))
for j, t in ipairs(tracked) do
  local job, job_id, state, result = KEYS[2 + j], t[2], t[3], t[4]
  if acked == #ids or redis.call('HGET', job, 'entry') == ids[t[1]] then
    if result ~= '' then
      redis.call('HSET', job, 'state', state, 'finished_ms', ARGV[2], 'result', result)
    else
      redis.call('HSET', job, 'state', state, 'finished_ms', ARGV[2])
    end
    redis.call('PEXPIRE', job, t[5])
    if state == 'cancelled' then redis.call('SREM', KEYS[1], job_id) end
    redis.call('PUBLISH', ARGV[3] .. job_id, state)
  end
end
return acked
