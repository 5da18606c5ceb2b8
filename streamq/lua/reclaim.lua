-- reclaim: take back entries idle past the visibility timeout and requeue or bury them.
-- XAUTOCLAIM (JUSTID: no payload copy, no counter bump) walks the PEL from the caller's cursor.
-- Each claimed entry is re-added as a new entry with its delivery count carried in field 'n',
-- so any live worker can take it; past max deliveries it goes to the dead-letter stream.
-- Ids deleted from the stream but still pending come back in XAUTOCLAIM's third element
-- (Redis 7 drops them from the PEL); they are only counted.
-- KEYS[1] stream, KEYS[2] dead-letter stream
-- ARGV[1] group, ARGV[2] reaper consumer, ARGV[3] min idle ms, ARGV[4] cursor, ARGV[5] count,
-- ARGV[6] max deliveries, ARGV[7] now ms
-- returns: {next cursor, requeued, buried, deleted, buried id 1, payload 1, ...}
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
  'COUNT', ARGV[5], 'JUSTID')
local requeued, buried = 0, 0
local deleted = 0
if r[3] then deleted = #r[3] end
local out = {}
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
    if payload == nil or n >= maxdel then
      local raw = payload or cmsgpack.pack(fields)
      local dead = {'j', raw, 'reason', 'max_deliveries', 'error_type', 'WorkerLost',
        'error_message', 'delivered ' .. n .. ' times without finishing (its worker died each time)',
        'deliveries', n, 'entry', id, 'dead_ms', ARGV[7], 'worker', ARGV[2]}
      -- Name the job when the payload is ours, so dead letters can be found by task.
      local ok, doc = pcall(cmsgpack.unpack, raw)
      if ok and type(doc) == 'table' and type(doc['t']) == 'string' then
        for _, v in ipairs({'task', doc['t'], 'job_id', tostring(doc['id']),
                            'attempts', tostring(doc['n'])}) do
          table.insert(dead, v)
        end
      end
      redis.call('XADD', KEYS[2], '*', unpack(dead))
      buried = buried + 1
      table.insert(out, id)
      table.insert(out, raw)
    else
      redis.call('XADD', KEYS[1], '*', 'j', payload, 'n', n)
      requeued = requeued + 1
    end
  end
end
-- Everything claimed was acked above, so the reaper's consumer owns nothing: drop it rather
-- than leave a consumer behind (Valkey creates it even when nothing was claimed).
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
local result = {r[1], requeued, buried, deleted}
for _, v in ipairs(out) do table.insert(result, v) end
return result
