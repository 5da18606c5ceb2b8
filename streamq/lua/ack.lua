-- ack: record the outcomes of a batch from one stream, in one step: finished entries are
-- XACKed and XDELed (and tracked jobs get their final state, result, expiry and a word to
-- result waiters); failed ones are XACKed, XDELed and their next attempt added to the stream
-- (due now) or the delayed set, with the error on the record. XDEL never runs without XACK
-- (no ghost PEL entries). Finished ids the group no longer holds were moved by the reaper (their
-- lease was lost) and already deleted, so deleting them all is safe; their records are written
-- only if no newer copy has started (the record still names this entry). A failed entry no
-- longer held is not retried: its reclaimed copy runs instead.
-- Per-entry data comes as one msgpack blob: a worker acks hundreds of entries per call, and
-- one argument costs far less to send and unpack than several per entry.
-- Outcomes are counted in the queue's per-minute throughput hash (one HINCRBY per outcome
-- kind per call, not per job): succeeded, cancelled, retried.
-- KEYS[1] cancels set, KEYS[2] stream, KEYS[3] delayed set, KEYS[4] this minute's throughput
-- hash, KEYS[4 + k] job hashes
-- ARGV[1] group, ARGV[2] now ms, ARGV[3] done channel prefix,
-- ARGV[4] msgpack [finished ids,
--   [[index among ids, job id, final state, result or '', ttl ms, key index] per tracked],
--   [[entry id, job id, payload, due ms, error type, message, traceback, ttl ms, key index
--     (0: untracked)] per failed entry]], ARGV[5] throughput hash ttl ms
-- returns: {finished entries acknowledged, failed entries no longer held}
local blob = cmsgpack.unpack(ARGV[4])
local ids, tracked, retries = blob[1], blob[2], blob[3]
local now = tonumber(ARGV[2])
local acked, cancelled, stopped, retried = 0, 0, 0, 0
if #ids > 0 then
  acked = redis.call('XACK', KEYS[2], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[2], unpack(ids))
end
for _, t in ipairs(tracked) do
  local job, job_id, state, result = KEYS[t[6]], t[2], t[3], t[4]
  if acked == #ids or redis.call('HGET', job, 'entry') == ids[t[1]] then
    if result ~= '' then
      redis.call('HSET', job, 'state', state, 'finished_ms', now, 'result', result)
    else
      redis.call('HSET', job, 'state', state, 'finished_ms', now)
    end
    redis.call('PEXPIRE', job, t[5])
    if state == 'cancelled' then
      redis.call('SREM', KEYS[1], job_id)
      cancelled = cancelled + 1
    end
    redis.call('PUBLISH', ARGV[3] .. job_id, state)
  end
end
local lost = 0
for _, r in ipairs(retries) do
  local id, job_id, payload, due = r[1], r[2], r[3], tonumber(r[4])
  local job = r[9] > 0 and KEYS[r[9]] or nil
  if redis.call('XACK', KEYS[2], ARGV[1], id) == 0 then
    lost = lost + 1
  else
    redis.call('XDEL', KEYS[2], id)
    if job and redis.call('HEXISTS', job, 'cancel_requested_ms') == 1 then
      -- Its cancel was asked while it ran: it ends here rather than run again.
      redis.call('HSET', job, 'state', 'cancelled', 'finished_ms', now)
      redis.call('PEXPIRE', job, r[8])
      redis.call('SREM', KEYS[1], job_id)
      redis.call('PUBLISH', ARGV[3] .. job_id, 'cancelled')
      stopped = stopped + 1
    else
      retried = retried + 1
      if due <= now then
        redis.call('XADD', KEYS[2], '*', 'j', payload)
      else
        redis.call('ZADD', KEYS[3], due, payload)
      end
      if job and redis.call('EXISTS', job) == 1 then
        -- Waiting again: no worker holds it, and the failed run's progress is not its own
        -- ('' is unset to readers; no HDEL, which the documented ACL does not grant).
        redis.call('HSET', job, 'state', due <= now and 'queued' or 'retrying', 'due_ms', due,
          'error_type', r[5], 'error_message', r[6], 'traceback', r[7],
          'progress', '', 'note', '', 'worker', '')
      end
    end
  end
end
-- Cancelled finished entries are all tracked (a cancel needs the record), so counted above.
local counts = {'succeeded', acked - math.min(cancelled, acked), 'cancelled', cancelled + stopped,
  'retried', retried}
local counted = false
for i = 1, #counts, 2 do
  if counts[i + 1] > 0 then
    redis.call('HINCRBY', KEYS[4], counts[i], counts[i + 1])
    counted = true
  end
end
if counted then redis.call('PEXPIRE', KEYS[4], ARGV[5]) end
return {acked, lost}
