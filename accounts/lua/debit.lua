-- debit: an event charge with a credit check: units from applicable buckets, then money.
-- KEYS: the six account keys of _lib.lua, then a child's four parent keys.
-- A child's credit check is its own available + what its parent lends; the charge is taken
-- from the child's own available first, the rest from the parent (see reserve.lua).
-- ARGV: op id, fingerprint, context, params {charge, units, service?, dest?, counters,
--   expected?, record?}.
-- The credit check applies to the charge: a charge of 0 (units covered by buckets) passes
-- whatever the balance.
-- Returns: answer code "ok" {covered_units, charged, from_buckets, available?,
--   from_parent (child)}; "stale" {covered}; "no_credit" {available, covered}; "suspended";
--   errors "unknown", "stale_meta", "amount" (field charge: the balance of the account or its
--   parent would pass -(2^53 - 1), possible only where credit is unlimited; field
--   counters[<key>]: a counter would leave -(2^53 - 1) .. 2^53 - 1).
local r = replay()
if r then return r end
local a, e = open_acct()
if not a then return e end
if a.status ~= 'active' then return finish('suspended', {status = a.status}) end
local units, charge = N(P.units), N(P.charge)
-- the money figures before anything is written (the grant adds unit buckets only)
local list = load_buckets()
local pa, plist, avail, denied, mine, theirs = credit_check(a, list, charge)
if not denied then
  local e = out_of_range(balance_after(a, list, mine), 'charge', 'balance')
    or (theirs ~= 0 and out_of_range(balance_after(pa, plist, theirs), 'charge', "parent's balance"))
    or counters_out_of_range(P.counters)
  if e then return e end
end
grant_cycle(a)
list = load_buckets()
local cands = unit_candidates(list, P.service, P.dest)
local covered = coverable(cands, units)
if P.expected ~= nil and N(P.expected) ~= covered then
  return finish('stale', {covered = covered})
end
if denied then return finish('no_credit', {available = avail, covered = covered}) end
local d = {}
take_free(cands, units, d, 'remaining')
local from_buckets = charge_money(a, list, mine, d)
if theirs ~= 0 then
  local pd = {child = a.id}
  charge_money(pa, plist, theirs, pd, PAR)
  parent_ledger('debit', pd)
  d.from_parent = theirs
end
add_counters(P.counters, d)
d.record = P.record
ledger('debit', d)
local detail = {covered_units = covered, charged = charge, from_buckets = from_buckets}
if avail ~= nil then detail.available = avail - charge end
if PAR ~= nil then detail.from_parent = theirs end
return finish('ok', detail)
