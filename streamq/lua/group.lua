-- group: create a consumer group on every priority stream of a queue, unless another group
-- already reads any of them. Checking and creating in one step means a refused start leaves
-- Redis as it found it: a second group on a queue would miss jobs (entries are deleted once
-- processed), and a half-created one would block the right group's next start.
-- KEYS: the queue's priority streams
-- ARGV[1] group
-- returns: names of the other groups found (nothing created), or {} (group on every stream)
local others, seen, has = {}, {}, {}
for i, stream in ipairs(KEYS) do
  if redis.call('EXISTS', stream) == 1 then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      local name
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1] end
      end
      if name == ARGV[1] then
        has[i] = true
      elseif name and not seen[name] then
        seen[name] = true
        table.insert(others, name)
      end
    end
  end
end
if #others > 0 then
  return others
end
for i, stream in ipairs(KEYS) do
  if not has[i] then
    redis.call('XGROUP', 'CREATE', stream, ARGV[1], '0', 'MKSTREAM')
  end
end
return {}
