-- unsubscribe: end the account's subscriptions to an offer on a local date (exclusive).
-- KEYS: the six account keys of _lib.lua.
-- ARGV: op id, fingerprint, context, params {offer, on (local date YYYY-MM-DD), on_utc (local
--   midnight starting `on`, UTC s)}.
-- Every non-empty subscription to `offer` that is active on `on` or starts after it ends on
-- `on`, or on its own first day when that is later (then it is empty: to = from). Its
-- allowance buckets of the current cycle that were granted already become valid until the
-- new end (never before their own start); gift buckets stay as they are. Works whatever the
-- account's status (a terminated account's subscriptions can still be ended).
-- Returns: answer code "ok" {ended [{offer, from, to, was (the previous to; absent: open)}]};
--   errors "unknown", "stale_meta", "invalid_state" (field offer: no such subscription).
local r = replay()
if r then return r end
local a, e = open_acct()
if not a then return e end
local subs = cjson.decode(a.subs or '[]')
local ended, valid_to = {}, {}
local any_bucket = false
for si, s in ipairs(subs) do
  if s.offer == P.offer and not sub_empty(s) and (s.to == nil or s.to > P.on) then
    local was = s.to
    if s.from > P.on then
      s.to, s.to_utc = s.from, s.from_utc
    else
      s.to, s.to_utc = P.on, P.on_utc
    end
    ended[#ended + 1] = {offer = s.offer, from = s.from, to = s.to, was = was}
    if CTX.cycle ~= nil then
      for _, al in ipairs(s.allow or {}) do
        local id = allowance_id(subs, si, al)
        local raw = redis.call('HGET', K_BK, id)
        if raw then
          local b = dec_bucket(id, raw)
          local vt = math.max(b.valid_from, N(s.to_utc))
          if b.valid_to == nil or b.valid_to > vt then
            b.valid_to = vt
            save_bucket(b)
            valid_to[id] = vt
            any_bucket = true
          end
        end
      end
    end
  end
end
if #ended == 0 then
  return err('invalid_state', 'offer', 'no subscription to ' .. P.offer .. ' active on '
    .. P.on .. ' or later')
end
a.subs = cjson.encode(subs)
redis.call('HSET', K_ACCT, 'subs', a.subs)
local d = {subscriptions = ended}
if any_bucket then d.bucket_valid_to = valid_to end
ledger('unsubscribe', d)
-- a first touch in a new cycle grants what is due under the new ends
grant_cycle(a)
return finish('ok', {ended = ended})
