-- promote: move due jobs from the delayed set to the stream: ZRANGE BYSCORE + XADD + ZREM.
-- One script, so schedulers running at once never promote a member twice or drop one.
-- KEYS[1] stream, KEYS[2] delayed set
-- ARGV[1] now ms, ARGV[2] most members to move
-- returns: {moved, score of the earliest remaining member or -1}
local due = redis.call('ZRANGE', KEYS[2], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[1], '*', 'j', member)
  redis.call('ZREM', KEYS[2], member)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #nxt == 0 then
  return {#due, -1}
end
return {#due, tonumber(nxt[2])}
