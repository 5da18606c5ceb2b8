-- prune: delete consumers that own no pending entry and have been idle past a threshold.
-- Checked and deleted in one step, so a consumer that reads meanwhile is never deleted with
-- entries (XGROUP DELCONSUMER would orphan them). A live one deleted while idle is recreated
-- by its next XREADGROUP.
-- KEYS[1] stream
-- ARGV[1] group, ARGV[2] min idle ms (time since the consumer last tried to read: a live
-- worker blocked on an empty stream stays fresh)
-- returns: names of deleted consumers
local deleted = {}
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
local min_idle = tonumber(ARGV[2])
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  local idle = info['idle']
  if info['pending'] == 0 and idle ~= nil and idle >= min_idle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    table.insert(deleted, info['name'])
  end
end
return deleted
