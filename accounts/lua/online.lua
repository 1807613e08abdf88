-- online: one credit-control request of a session for all its rating groups, atomically:
-- check what the node priced with, commit the used units, set each hold to the newly granted
-- units, write the rated records, remember the answer for retransmissions.
-- KEYS: 1-5 the account keys of _lib.lua, 6 the session hash, 7-10 a child's parent keys.
-- ARGV: op id (<session>/<request number>), fingerprint (unused), context, params:
--   {sid, req, msisdn (the subscriber's MSISDN, when the node resolved it from its cache),
--    kind ("I" initial, "U" update, "T" terminate, "D" direct debit), rec (records
--    sorted set), fin (the account's set of sessions with a final grant), ttl, done_ttl,
--    subs_sha (expected sha1 of the account's subscriptions, kinds I and D), static (answers
--    of rating groups the node decided alone, stored with the answer),
--    rgs: [{rg, rsv (reservation field), new, seq (expected state version), rating (stored
--      when new), skeys (the counters of the standing, sent at the first commit), srange
--      (for each, the values [lo, hi) that price as the node did), snames (the discounts
--      of skeys[2..]), svc, dn (destination name),
--      drated (rated units this commit adds), used (units it reports), cv {[covered] = {tot,
--      charge, discount, net, ctr}}, hdr (rated units of the hold), hunits (units granted),
--      hv {["<covered>:<held>"] = money}, final (the grant is the last), code (4012: no grant),
--      expires_at, record (the rated record's fixed fields)}], rgl_before / rgl_after (the
--    session's rating groups, comma-separated, before and after this request)}
-- Nothing is written unless every rating group passes; otherwise the answer names the facts
-- the node must price with ("stale", "short") and the node asks again.
-- Returns one JSON answer: code "ok" {rgs [{rg, code, granted, covered, held, charged,
--   final}], available}; "replay" {answer}; "old" {last}; "no_session"; "stale" {rg, what,
--   ...facts}; "short" {rg, available, free}; "suspended" {status}; errors "unknown", "amount".
local a, e0 = open_acct()  -- unknown, or stale_meta: the node's lookup key is outdated
if not a then return {e0[1]} end
local SK = KEYS[6]
-- a subscriber the node resolved from its cache: still one of this account's MSISDNs?
if P.msisdn ~= nil and not string.find(',' .. (a.msisdns or '') .. ',', ',' .. P.msisdn .. ',', 1, true) then
  return {err('unknown', 'subscriber', 'the MSISDN is not this account\'s')[1]}
end
local req = N(P.req)
local last = redis.call('HGET', SK, 'last')
if last then
  last = N(last)
  if req <= last then
    local ans = redis.call('HGET', SK, 'a:' .. I(req))
    if ans then return {cjson.encode({code = 'replay', answer = ans})} end
    return {cjson.encode({code = 'old', last = I(last)})}
  end
elseif P.kind == 'U' or P.kind == 'T' then
  return {cjson.encode({code = 'no_session'})}
end
-- a session that ended (TERMINATE, an event, or every hold released by the sweeper: "as if
-- it had terminated") takes no more requests: only retransmissions, answered above
if last then
  local kind = redis.call('HGET', SK, 'kind')
  local ended = kind == 'T' or kind == 'D'
  if not ended and redis.call('HGET', SK, 'held') == '1' then
    ended = true
    for g in string.gmatch(redis.call('HGET', SK, 'rgl') or '', '[^,]+') do
      if redis.call('HEXISTS', K_RSV, P.sid .. '/' .. g) == 1 then ended = false; break end
    end
  end
  if ended then return {cjson.encode({code = 'no_session', ended = true})} end
end
local active = a.status == 'active'
if (P.kind == 'I' or P.kind == 'D') and not active then
  return {cjson.encode({code = 'suspended', status = a.status})}
end
if P.subs_sha ~= nil and redis.sha1hex(a.subs or '[]') ~= P.subs_sha then
  return {cjson.encode({code = 'stale', what = 'subs', subs = a.subs or '[]'})}
end
local function stale(what, rg, facts)
  facts.code = 'stale'; facts.what = what; facts.rg = rg
  return {cjson.encode(facts)}
end
-- pass 1: the node's assumptions, read only
local states = {}
local rgl = redis.call('HGET', SK, 'rgl') or ''
if rgl ~= (P.rgl_before or '') then
  local all = {}
  for _, h in ipairs(P.rgs) do all[h.rg] = redis.call('HGET', SK, 'rg:' .. h.rg) or '' end
  for g in string.gmatch(rgl, '[^,]+') do all[g] = redis.call('HGET', SK, 'rg:' .. g) or '' end
  return stale('state', '', {states = all, rgl = rgl})
end
for i, g in ipairs(P.rgs) do
  local raw = redis.call('HGET', SK, 'rg:' .. g.rg)
  local st = raw and cjson.decode(raw) or {seq = '0'}
  if (g.new and raw) or (not g.new and not raw) or N(st.seq) ~= N(g.seq) then
    local all = {}
    for _, h in ipairs(P.rgs) do all[h.rg] = redis.call('HGET', SK, 'rg:' .. h.rg) or '' end
    for h in string.gmatch(rgl, '[^,]+') do all[h] = redis.call('HGET', SK, 'rg:' .. h) or '' end
    return stale('state', g.rg, {states = all, rgl = rgl})
  end
  if st.standing == nil and g.skeys ~= nil then
    -- the first commit fixes the standing: the accumulators as they are now, provided they
    -- price this request as the node did (each inside the range the node priced for)
    local vals = {}
    local fits = true
    for j, k in ipairs(g.skeys) do
      local x = N(redis.call('HGET', K_CTR, k) or '0')
      vals[j] = I(x)
      local lo, hi = g.srange[j][1], g.srange[j][2]
      if (lo ~= '' and x < N(lo)) or (hi ~= '' and x >= N(hi)) then fits = false end
    end
    if not fits then return stale('standing', g.rg, {svals = vals}) end
    local disc = {}
    for j, name in ipairs(g.snames or {}) do disc[j] = {name, vals[j + 1]} end
    g.standing = {tier = vals[1], disc = disc}
    g.svals = vals
  end
  states[i] = st
end

-- pass 2: every money and unit figure in memory, in rating-group order; nothing written yet
grant_cycle(a)
local list, by_id = load_buckets()
local pa, plist = load_parent()
local touched, ptouched = {}, {}
local a_bal, a_rsv = N(a.bal), N(a.rsv)
local p_bal, p_rsv = pa and N(pa.bal) or 0, pa and N(pa.rsv) or 0
local function sync()  -- the in-memory figures as the prelude's helpers read them
  a.bal = I(a_bal); a.rsv = I(a_rsv)
  if pa then pa.bal = I(p_bal); pa.rsv = I(p_rsv) end
end
local function own_avail() sync(); return available(a, list) end
local function lend()
  if pa == nil then return 0 end
  sync()
  return lends(pa, plist)
end
-- charge money to one account in memory: money buckets soonest expiry first, then balance
local function pay(amount, lst, is_parent, d)
  if amount <= 0 then
    if amount < 0 then  -- a later commit that costs less (a connect fee no longer due)
      if is_parent then p_bal = p_bal - amount else a_bal = a_bal - amount end
      d.balance = (d.balance or 0) - amount
    end
    return
  end
  local fb = 0
  for _, b in ipairs(money_candidates(lst)) do
    if fb >= amount then break end
    local t = math.min(amount - fb, b.remaining - b.reserved)
    if t > 0 then
      b.remaining = b.remaining - t
      bdelta(d, b.id, 'remaining', -t)
      if is_parent then ptouched[b.id] = b else touched[b.id] = b end
      fb = fb + t
    end
  end
  local rest = amount - fb
  if rest ~= 0 then
    if is_parent then p_bal = p_bal - rest else a_bal = a_bal - rest end
    d.balance = (d.balance or 0) - rest
  end
end

local out, deltas, pdeltas, writes = {}, {}, {}, {}
local fin_add, fin_rem = false, false
for i, g in ipairs(P.rgs) do
  local st = states[i]
  local d = {session = P.sid, rg = g.rg}
  local pd = {child = a.id, session = P.sid, rg = g.rg}
  -- free what this rating group held
  local res = g.rsv and redis.call('HGET', K_RSV, g.rsv) or nil
  res = res and cjson.decode(res) or nil
  if res then
    for id, n in pairs(res.units or {}) do
      local b = by_id[id]
      if b and N(n) > 0 then
        b.reserved = b.reserved - N(n); bdelta(d, id, 'reserved', -N(n)); touched[id] = b
      end
    end
    local fo, fp = N(res.money), pa and N(res.pmoney) or 0
    if fo ~= 0 then a_rsv = a_rsv - fo; d.reserved = -fo end
    if fp ~= 0 then p_rsv = p_rsv - fp; pd.reserved = -fp; d.parent_reserved = -fp end
  end
  -- what buckets cover: the commit first, then the hold
  local cands = unit_candidates(list, g.svc, g.dn, g.at and N(g.at) or nil)
  local drated, hdr = N(g.drated), N(g.hdr)
  local free = coverable(cands, drated + hdr)
  local c = math.min(free, drated)
  local ch = math.min(free - c, hdr)
  local v = g.cv and g.cv[I(c)] or nil
  if g.cv and not v then return stale('cover', g.rg, {free = I(free)}) end
  local m = 0
  if g.hv then
    m = g.hv[I(c) .. ':' .. I(ch)]
    if m == nil then return stale('cover', g.rg, {free = I(free)}) end
    m = N(m)
  end
  -- commit
  local charged = 0
  if v then
    take_free(cands, c, d, 'remaining', nil, touched)
    charged = N(v.net)
    local own, ln = own_avail(), lend()
    local mine, theirs = charged, 0
    if P.kind == 'D' and charged > 0 then  -- an event is charged whole or not at all
      local avail = family_available(own, ln)
      if avail ~= nil and charged > avail then
        return {cjson.encode({code = 'short', rg = g.rg, available = I(avail), free = I(free)})}
      end
    end
    if charged > 0 then mine, theirs = split(charged, own, ln) end
    pay(mine, list, false, d)
    if theirs ~= 0 then pay(theirs, plist, true, pd); d.from_parent = theirs end
    if v.ctr then
      d.counters = {}
      for k, n in pairs(v.ctr) do d.counters[k] = N(n) end
    end
  end
  -- hold: the credit check applies to the money asked for only
  local granted, held = N(g.hunits), 0
  local nres = nil
  if g.hv and granted > 0 and active then  -- a suspended account commits, and gets nothing
    local own, ln = own_avail(), lend()
    local avail = family_available(own, ln)
    if m > 0 and avail ~= nil and m > avail then
      return {cjson.encode({code = 'short', rg = g.rg, available = I(avail), free = I(free)})}
    end
    local mine, theirs = split(m, own, ln)
    nres = {money = mine, units = {}, expires_at = N(g.expires_at), service = g.svc, dest = g.dn}
    if pa then nres.pmoney = theirs end
    local hd = {}
    held = take_free(cands, ch, hd, 'reserved', nil, touched)
    for id, t in pairs(hd.buckets or {}) do
      nres.units[id] = t.reserved; bdelta(d, id, 'reserved', t.reserved)
    end
    if mine ~= 0 then a_rsv = a_rsv + mine; d.reserved = (d.reserved or 0) + mine end
    if theirs ~= 0 then
      p_rsv = p_rsv + theirs; pd.reserved = (pd.reserved or 0) + theirs
      d.parent_reserved = (d.parent_reserved or 0) + theirs
    end
  end
  local nst = {seq = I(N(st.seq) + 1), rating = st.rating or g.rating, tot = st.tot,
    standing = st.standing or g.standing}
  if v then nst.tot = v.tot end
  local rec = nil
  if v and (N(g.used) ~= 0 or charged ~= 0) then
    rec = g.record
    rec.usage = g.used; rec.rated_usage = g.drated; rec.covered = I(c)
    rec.charge = v.charge; rec.discount = v.discount; rec.net_charge = v.net
    d.cdr_id = rec.cdr_id
  end
  if P.kind == 'D' and v then  -- what an event moved, so that a refund can undo it
    nst.ev = {bal = d.balance or 0, bk = d.buckets, pbal = pd.balance or 0, pbk = pd.buckets,
      ctr = v.ctr}
  end
  writes[i] = {g = g, st = nst, res = nres, rec = rec, v = v}
  deltas[i] = d
  pdeltas[i] = pd
  if g.final then fin_add = true elseif P.kind ~= 'D' then fin_rem = true end
  local code = N(g.code) ~= 0 and g.code or (active and '2001' or '4010')
  out[i] = {rg = g.rg, unit = g.unit, code = code, granted = I(nres and granted or 0), covered = I(c),
    held = I(held), charged = I(charged), final = g.final and true or false}
  if v and g.standing and not st.standing then out[i].standing = g.standing; out[i].svals = g.svals end
end
local e = out_of_range(a_bal, 'charge', 'balance') or out_of_range(a_rsv, 'money', 'money held')
  or (pa and (out_of_range(p_bal, 'charge', "parent's balance")
    or out_of_range(p_rsv, 'money', "parent's money held")))
if e then return {e[1]} end

-- pass 3: write
sync()
redis.call('HSET', K_ACCT, 'bal', a.bal, 'rsv', a.rsv)
for _, b in pairs(touched) do save_bucket(b) end
if pa then
  redis.call('HSET', PAR.acct, 'bal', pa.bal, 'rsv', pa.rsv)
  for _, b in pairs(ptouched) do save_bucket(b, PAR) end
end
local verb = ({I = 'initial', U = 'update', T = 'terminate', D = 'event'})[P.kind]
for i, w in ipairs(writes) do
  local g = w.g
  if g.rsv then
    if w.res then
      redis.call('HSET', K_RSV, g.rsv, enc(w.res))
    else
      redis.call('HDEL', K_RSV, g.rsv)
    end
  end
  redis.call('HSET', SK, 'rg:' .. g.rg, enc(w.st))
  if w.v then add_counters(w.v.ctr, {}) end
  if w.rec then redis.call('ZADD', P.rec, N(w.rec.start), enc(w.rec)) end
  parent_ledger(verb, pdeltas[i])
  ledger(verb, deltas[i])
end
if fin_add then redis.call('SADD', P.fin, P.sid) elseif fin_rem then redis.call('SREM', P.fin, P.sid) end
local avail = family_available(available(a, list), lend())
local answer = {code = 'ok', rgs = out, static = P.static}
-- unit buckets this request used, for the bundle notifications (80% used, exhausted)
local used_bk = {}
for _, d in ipairs(deltas) do
  for id, t in pairs(d.buckets or {}) do
    local b = by_id[id]
    if b and b.kind == 'units' and (t.remaining or 0) ~= 0 then
      used_bk[id] = {rem = b.remaining, init = b.initial,
        used = (used_bk[id] and used_bk[id].used or 0) - t.remaining}
    end
  end
end
if next(used_bk) then answer.bk = used_bk end
if avail ~= nil then answer.available = I(avail) end
local ans = enc(answer)
local held = '0'
for _, w in ipairs(writes) do if w.res then held = '1' end end
redis.call('HSET', SK, 'last', I(req), 'a:' .. I(req), ans, 'kind', P.kind,
  'rgl', P.rgl_after or '', 'held', held)
if P.kind == 'T' or P.kind == 'D' then
  redis.call('EXPIRE', SK, N(P.done_ttl))
  if P.kind == 'T' then redis.call('SREM', P.fin, P.sid) end
else
  redis.call('EXPIRE', SK, N(P.ttl))
end
return {ans}
