-- drop: delete a claim key only if its value is still this caller's own (a failed create's
-- clean-up never removes a claim another create has taken since).
-- KEYS: 1 the index key. ARGV: 1 the caller's value. Returns 1 if deleted, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
