-- replay: move dead-letter entries back to the stream: XDEL dead + XADD stream, in one step.
-- Only the caller whose XDEL removed the entry adds it, so two replays never duplicate a job.
-- KEYS[1] dead-letter stream, KEYS[2] stream
-- ARGV pairs: dead entry id, payload to enqueue
-- returns: number replayed
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'j', ARGV[i + 1])
    n = n + 1
  end
end
return n
