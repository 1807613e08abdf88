-- swap: replace a claim key's value only if it is still the one that was read (take-over).
-- KEYS: 1 the index key. ARGV: 1 the value read, 2 the new value. Returns 1 if swapped, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
