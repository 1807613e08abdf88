-- commit: charge used units and money for a session and free what the reservation held.
-- KEYS: the six account keys of _lib.lua, then a child's four parent keys.
-- ARGV: op id, fingerprint, context, params {session, charge, units, service?, dest?,
--   counters {key: delta}, release (bool), record?}.
-- Units come from the buckets the session holds first, then other applicable buckets (soonest
-- expiry first). The session's held money is freed first (all of it with release, else up to
-- the charge, the account's own part first); then the charge is taken without a credit
-- check (the usage happened): valid money buckets soonest expiry first, then the balance.
-- A child pays from its own available first; its parent pays the rest up to what it lends
-- (a parent that is no longer active: up to what this session held on it); what neither
-- covers stays on the child. Works on any status (the grant was given).
-- Returns: answer code "ok" {covered_units, charged, from_buckets, released_money,
--   from_parent (child)}; errors "unknown", "stale_meta", "amount" (field charge: the balance
--   of the account or its parent would pass -(2^53 - 1); field counters[<key>]: a counter
--   would leave -(2^53 - 1) .. 2^53 - 1; nothing is written).
local r = replay()
if r then return r end
local a, e = open_acct()
if not a then return e end
local pa, plist = load_parent()
local units, charge = N(P.units), N(P.charge)
local raw = redis.call('HGET', K_RSV, P.session)
local res = raw and cjson.decode(raw) or nil
-- the money figures before anything is written (the grant below adds unit buckets only):
-- what is freed of the held money, then how the charge splits, on the state after the free
local held_own = res and N(res.money) or 0
local held_par = (res and pa) and N(res.pmoney) or 0
local free_own, free_par = held_own, held_par
if not P.release then
  local f = math.min(charge, held_own + held_par)
  free_own = math.min(f, held_own)
  free_par = f - free_own
end
local own = available(a, load_buckets())
if own ~= nil then own = own + free_own end
local lend = 0
if pa ~= nil then
  local v = available(pa, plist)
  if v ~= nil then v = v + free_par end
  if pa.status == 'active' then
    lend = v ~= nil and math.max(v, 0) or nil
  else
    lend = math.min(free_par, v == nil and free_par or math.max(v, 0))
  end
end
local mine, theirs = split(charge, own, lend)
local e = out_of_range(balance_after(a, load_buckets(), mine), 'charge', 'balance')
  or (theirs ~= 0 and out_of_range(balance_after(pa, plist, theirs), 'charge', "parent's balance"))
  or counters_out_of_range(P.counters)
if e then return e end
grant_cycle(a)
local list, by_id = load_buckets()
local d = {session = P.session}
local pd = {child = a.id, session = P.session}
local need = units
if res then
  local held = {}
  for id, n in pairs(res.units) do
    if by_id[id] and N(n) > 0 then held[#held + 1] = by_id[id] end
  end
  table.sort(held, order)
  for _, b in ipairs(held) do
    local t = math.min(need, N(res.units[b.id]), b.remaining)
    if t > 0 then
      b.remaining = b.remaining - t; b.reserved = b.reserved - t
      res.units[b.id] = N(res.units[b.id]) - t
      bdelta(d, b.id, 'remaining', -t); bdelta(d, b.id, 'reserved', -t)
      save_bucket(b)
      need = need - t
    end
  end
end
if need > 0 then need = need - take_free(unit_candidates(list, P.service, P.dest), need, d, 'remaining') end
-- free the held money
if free_own ~= 0 then
  set_reserved(a, N(a.rsv) - free_own)
  d.reserved = -free_own
end
if free_par ~= 0 then
  set_reserved(pa, N(pa.rsv) - free_par, PAR)
  pd.reserved = -free_par
  d.parent_reserved = -free_par
end
-- then charge: own available first, the parent's for the rest
local from_buckets = charge_money(a, list, mine, d)
if theirs ~= 0 then
  charge_money(pa, plist, theirs, pd, PAR)
  d.from_parent = theirs
end
if res then
  if P.release then
    free_held_units(res, by_id, d)
    redis.call('HDEL', K_RSV, P.session)
  else
    res.money = held_own - free_own
    if res.pmoney ~= nil then res.pmoney = N(res.pmoney) - free_par end
    redis.call('HSET', K_RSV, P.session, enc(res))
  end
end
add_counters(P.counters, d)
d.record = P.record
parent_ledger('commit', pd)
ledger('commit', d)
local detail = {covered_units = units - need, charged = charge, from_buckets = from_buckets,
  released_money = free_own + free_par}
if PAR ~= nil then detail.from_parent = theirs end
return finish('ok', detail)
