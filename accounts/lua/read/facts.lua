-- facts: one account's hashes read at one instant, for accounts/snapshot.py (no prelude:
-- it writes nothing, and needs no op id or context).
-- KEYS: 1 account hash, 2 buckets hash, 3 counters hash (one account: one slot).
-- Returns {account flat, buckets flat, counters flat} (HGETALL replies; empty: no account).
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]),
  redis.call('HGETALL', KEYS[3])}
