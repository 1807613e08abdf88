-- reserve: hold units on applicable unit buckets (soonest expiry first) and money for the rest.
-- KEYS: the six account keys of _lib.lua, then a child's four parent keys.
-- ARGV: op id, fingerprint, context, params {session, money, units, service?, dest?,
--   expected? (covered units the caller priced with), expires_at}.
-- A child's credit check is its own available + what its parent lends (_lib.lua: lends);
-- the hold goes on the child's own available first, the rest on the parent, and the
-- reservation records both parts (money, pmoney) so commit/release settle each account.
-- The credit check applies to the money asked for: a request with money 0 (its units covered
-- by buckets) is granted whatever the balance (online.md: 4012 only when no unit is covered).
-- Returns: answer code "ok" {covered, granted_money, available?, from_parent (child)};
--   "stale" {covered} when the buckets cover another amount than expected; "no_credit"
--   {available, covered}; "suspended" for a non-active account; errors "unknown", "amount"
--   (field money: the money held by the account or its parent would pass 2^53 - 1).
local r = replay()
if r then return r end
local a, e = open_acct()
if not a then return e end
if a.status ~= 'active' then return finish('suspended', {status = a.status}) end
local units, money = N(P.units), N(P.money)
-- the money figures first (the grant below adds unit buckets only, so they do not change):
-- a hold that would pass the credit check but not fit the exact range is refused before
-- anything is written
local pa, plist, avail, denied, mine, theirs = credit_check(a, load_buckets(), money)
if not denied then
  local e = out_of_range(N(a.rsv) + mine, 'money', 'money held')
    or (theirs ~= 0 and out_of_range(N(pa.rsv) + theirs, 'money', "parent's money held"))
  if e then return e end
end
grant_cycle(a)
local list = load_buckets()
-- count coverage first, write nothing until every check has passed
local cands = unit_candidates(list, P.service, P.dest)
local covered = coverable(cands, units)
if P.expected ~= nil and N(P.expected) ~= covered then
  return finish('stale', {covered = covered})
end
if denied then return finish('no_credit', {available = avail, covered = covered}) end
local d = {session = P.session}
take_free(cands, units, d, 'reserved')
local res = redis.call('HGET', K_RSV, P.session)
res = res and cjson.decode(res) or {money = '0', units = {}}
res.money = N(res.money) + mine
if theirs ~= 0 or res.pmoney ~= nil then res.pmoney = N(res.pmoney) + theirs end
for id, t in pairs(d.buckets or {}) do res.units[id] = N(res.units[id]) + t.reserved end
res.expires_at = N(P.expires_at)
res.service = P.service
res.dest = P.dest
redis.call('HSET', K_RSV, P.session, enc(res))
if mine ~= 0 then
  set_reserved(a, N(a.rsv) + mine)
  d.reserved = mine
end
if theirs ~= 0 then
  set_reserved(pa, N(pa.rsv) + theirs, PAR)
  d.parent_reserved = theirs
  ledger('reserve', {child = a.id, session = P.session, reserved = theirs}, PAR)
end
ledger('reserve', d)
local detail = {covered = covered, granted_money = money}
if avail ~= nil then detail.available = avail - money end
if PAR ~= nil then detail.from_parent = theirs end
return finish('ok', detail)
