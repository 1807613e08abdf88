-- undo_event: a REFUND that undoes a direct debit of the same session: the money back where
-- it came from (money buckets, balance; a child's parent too), the bundle units back to their
-- buckets (while they exist), the accumulators reduced, and a negative rated record.
-- KEYS: 1-5 the account keys of _lib.lua, 6 the session hash, 7-10 a child's parent keys.
-- ARGV: op id (<session>/<request number>), fingerprint (unused), context, params {sid, req,
--   rg, rec (records sorted set), ttl}.
-- Returns one JSON answer: "ok" {refunded (micro-units), available?}; "replay" {answer};
--   "no_event" (the session has no such debit); "already" (undone before); "unknown".
local a, e0 = open_acct()  -- unknown, or stale_meta: the node's lookup key is outdated
if not a then return {e0[1]} end
local SK = KEYS[6]
local req = N(P.req)
local ans = redis.call('HGET', SK, 'a:' .. I(req))
if ans then return {cjson.encode({code = 'replay', answer = ans})} end
if redis.call('HGET', SK, 'kind') ~= 'D' then return {cjson.encode({code = 'no_event'})} end
local raw = redis.call('HGET', SK, 'rg:' .. P.rg)
if not raw then return {cjson.encode({code = 'no_event'})} end
local st = cjson.decode(raw)
if st.ev == nil then return {cjson.encode({code = 'no_event'})} end
if st.undone then return {cjson.encode({code = 'already'})} end
local d = {session = P.sid, rg = P.rg, undo = true}
local function give_back(ev_bal, ev_bk, h, dd)
  local acct = load_acct(h)
  if acct == nil then return end
  local _, by_id = load_buckets(h)
  if N(ev_bal) ~= 0 then
    set_balance(acct, N(acct.bal) - N(ev_bal), h)
    dd.balance = -N(ev_bal)
  end
  for id, t in pairs(ev_bk or {}) do
    local b = by_id[id]
    local n = N(t.remaining)
    if b and n ~= 0 then
      b.remaining = b.remaining - n
      save_bucket(b, h)
      bdelta(dd, id, 'remaining', -n)
    end
  end
end
give_back(st.ev.bal, st.ev.bk, nil, d)
if PAR ~= nil then
  local pd = {child = a.id, session = P.sid, rg = P.rg, undo = true}
  give_back(st.ev.pbal, st.ev.pbk, PAR, pd)
  parent_ledger('undo', pd)
end
local neg = {}
for k, n in pairs(st.ev.ctr or {}) do neg[k] = -N(n) end
add_counters(neg, d)
local tot = st.tot or {}
local rating = st.rating or {}
local rec = {cdr_id = P.sid .. '/' .. P.rg .. '/refund', account = a.id, session_id = P.sid,
  rating_group = P.rg, service = rating.svc, destination = rating.dst,
  destination_name = rating.dn, start = rating.start, usage = -N(tot.used),
  rated_usage = -N(tot.rated), covered = -N(tot.covered), charge = -N(tot.charge),
  discount = -N(tot.discount), net_charge = -N(tot.net)}
redis.call('ZADD', P.rec, N(rating.start), enc(rec))
d.cdr_id = rec.cdr_id
ledger('undo', d)
st.undone = '1'
redis.call('HSET', SK, 'rg:' .. P.rg, enc(st))
local answer = {code = 'ok', refunded = I(N(tot.net))}
local out = enc(answer)
redis.call('HSET', SK, 'a:' .. I(req), out, 'last',
  I(math.max(req, N(redis.call('HGET', SK, 'last') or '0'))))
redis.call('EXPIRE', SK, N(P.ttl))
return {out}
