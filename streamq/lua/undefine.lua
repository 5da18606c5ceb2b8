-- undefine: remove a schedule: its hash, its next fire time and its id in the queue's set.
-- Jobs it already enqueued stay; a pool whose code defines it writes it again at start.
-- KEYS[1] schedule hash, KEYS[2] next-fire zset, KEYS[3] the queue's schedule id set
-- ARGV[1] id
-- returns 1 if it existed, else 0
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return existed
