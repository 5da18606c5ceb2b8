-- ack: record finished entries of one stream: XACK + XDEL, and for tracked jobs their final
-- state, result, expiry and a word to result waiters, in one step. XDEL never runs without
-- XACK (no ghost PEL entries). Ids the group no longer holds were moved by the reaper (their
-- lease was lost) and already deleted, so deleting every id given is safe; their records are
-- written only if no newer copy has started (the record still names this entry).
-- KEYS[1] cancels set, KEYS[2] stream, KEYS[2 + j] job hash of tracked entry j
-- ARGV[1] group, ARGV[2] now ms, ARGV[3] done channel prefix, ARGV[4] n = number of entries,
-- ARGV[5 .. 4 + n] entry ids, then 5 per tracked entry: its index among the ids, job id,
-- final state (succeeded or cancelled), result bytes ('' = none), record ttl ms
-- returns: number of entries acknowledged (fewer than n: some leases were lost)
local n = tonumber(ARGV[4])
local acked = redis.call('XACK', KEYS[2], ARGV[1], unpack(ARGV, 5, 4 + n))
redis.call('XDEL', KEYS[2], unpack(ARGV, 5, 4 + n))
local j = 0
for a = 5 + n, #ARGV, 5 do
  j = j + 1
  local job, state, result = KEYS[2 + j], ARGV[a + 2], ARGV[a + 3]
  if acked == n or redis.call('HGET', job, 'entry') == ARGV[4 + tonumber(ARGV[a])] then
    if result ~= '' then
      redis.call('HSET', job, 'state', state, 'finished_ms', ARGV[2], 'result', result)
    else
      redis.call('HSET', job, 'state', state, 'finished_ms', ARGV[2])
    end
    redis.call('PEXPIRE', job, ARGV[a + 4])
    if state == 'cancelled' then redis.call('SREM', KEYS[1], ARGV[a + 1]) end
    redis.call('PUBLISH', ARGV[3] .. ARGV[a + 1], state)
  end
end
return acked
