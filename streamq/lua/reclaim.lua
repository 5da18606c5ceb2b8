-- reclaim: take back entries idle past the visibility timeout and requeue or bury them.
-- XAUTOCLAIM (JUSTID: no payload copy, no counter bump) walks the PEL from the caller's cursor.
-- With a consumer name in ARGV[8], it takes that consumer's entries instead, whatever their
-- idle time: the supervisor does so for a child it saw die, without waiting out the timeout.
-- Each claimed entry is re-added as a new entry with its delivery count carried in field 'n',
-- so any live worker can take it; past max deliveries it goes to the dead-letter stream.
-- Ids deleted from the stream but still pending come back in XAUTOCLAIM's third element
-- (Redis 7 drops them from the PEL); they are only counted.
-- Buried entries are counted as 'dead' in the queue's per-minute throughput hash.
-- KEYS[1] stream, KEYS[2] dead-letter stream, KEYS[3] this minute's throughput hash
-- ARGV[1] group, ARGV[2] reaper consumer, ARGV[3] min idle ms, ARGV[4] cursor, ARGV[5] count,
-- ARGV[6] max deliveries, ARGV[7] now ms, ARGV[8] dead consumer ('' = by idle time),
-- ARGV[9] throughput hash ttl ms
-- returns: {next cursor, deleted, {old id, job id, ...} requeued,
--           {old id, job id, payload, dead id, ...} buried}
local r
if ARGV[8] ~= '' then
  local ids = {}
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[5], ARGV[8])) do
    table.insert(ids, p[1])
  end
  r = {'0-0', ids, {}}
else
  r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
    'COUNT', ARGV[5], 'JUSTID')
end
local deleted = 0
if r[3] then deleted = #r[3] end
local requeued, buried = {}, {}
local maxdel = tonumber(ARGV[6])
for _, id in ipairs(r[2]) do
  local e = redis.call('XRANGE', KEYS[1], id, id)
  redis.call('XACK', KEYS[1], ARGV[1], id)
  if #e == 0 then
    deleted = deleted + 1
  else
    local fields = e[1][2]
    local payload, n = nil, 0
    for i = 1, #fields, 2 do
      if fields[i] == 'j' then payload = fields[i + 1]
      elseif fields[i] == 'n' then n = tonumber(fields[i + 1]) or 0 end
    end
    n = n + 1
    redis.call('XDEL', KEYS[1], id)
    local raw = payload or cmsgpack.pack(fields)
    -- Name the job when the payload is ours, so records and dead letters can be found.
    local ok, doc = pcall(cmsgpack.unpack, raw)
    local job_id, named = '', {}
    if ok and type(doc) == 'table' and type(doc['t']) == 'string' then
      job_id = tostring(doc['id'])
      named = {'task', doc['t'], 'job_id', job_id, 'attempts', tostring(doc['n'])}
    end
    if payload == nil or n >= maxdel then
      local reason = payload == nil and 'malformed_entry' or 'max_deliveries'
      local dead = {'j', raw, 'reason', reason, 'error_type', 'WorkerLost',
        'error_message', 'delivered ' .. n .. ' times without finishing (its worker died each time)',
        'deliveries', n, 'entry', id, 'dead_ms', ARGV[7], 'worker', ARGV[2]}
      for _, v in ipairs(named) do table.insert(dead, v) end
      local dead_id = redis.call('XADD', KEYS[2], '*', unpack(dead))
      for _, v in ipairs({id, job_id, raw, dead_id}) do table.insert(buried, v) end
    else
      redis.call('XADD', KEYS[1], '*', 'j', payload, 'n', n)
      table.insert(requeued, id)
      table.insert(requeued, job_id)
    end
  end
end
if #buried > 0 then
  redis.call('HINCRBY', KEYS[3], 'dead', #buried / 4)
  redis.call('PEXPIRE', KEYS[3], ARGV[9])
end
-- Everything claimed was acked above, so the reaper's consumer owns nothing: drop it rather
-- than leave a consumer behind (Valkey creates it even when nothing was claimed).
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
if ARGV[8] ~= '' and #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[8]) == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[8])
end
return {r[1], deleted, requeued, buried}
