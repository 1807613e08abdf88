-- _lib.lua: shared prelude, prepended to every verb script by accounts/scripts.py.
-- KEYS (all verbs): 1 account hash, 2 buckets hash, 3 reservations hash, 4 counters hash,
--   5 ledger stream, 6 op-id key; for a child account, the family-aware verbs (create,
--   reserve, commit, release, debit) also get its parent's 7 account hash, 8 buckets hash,
--   9 ledger stream, 10 children set (same slot: the family shares the root's hash tag).
--   `create` adds its fence key last (KEYS 7, or 11 for a child).
-- ARGV (all verbs): 1 op id, 2 request fingerprint, 3 context JSON {now, today, cycle, cs, ce,
--   csd, ced, ttl, claim} (cycle bounds in UTC s and local dates; claim: the token of the
--   lookup key the caller read, checked against the account's own), 4 verb parameters JSON.
-- Every verb returns {answer JSON, applied 0|1, account flat, buckets flat, reservations flat,
--   counters flat}; an error returns {answer JSON with "error", 0} and writes nothing.
-- Integers travel as decimal strings in JSON: cjson prints only 14 significant digits.
local MAXI = 9007199254740991
local K_ACCT, K_BK, K_RSV, K_CTR, K_LED, K_OP = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local OP_ID, FP = ARGV[1], ARGV[2]
local CTX = cjson.decode(ARGV[3])
local P = cjson.decode(ARGV[4])
local NOW = tonumber(CTX.now)
-- an account's keys as used by the helpers below: this account, and its parent if any
local SELF = {acct = K_ACCT, bk = K_BK, led = K_LED}
local PAR = nil
if #KEYS >= 10 then PAR = {acct = KEYS[7], bk = KEYS[8], led = KEYS[9], kids = KEYS[10]} end

local function I(x) return string.format('%d', x) end
local function N(x)
  if x == nil or x == '' or x == cjson.null then return 0 end
  return tonumber(x)
end

-- numbers -> exact decimal strings, recursively, so cjson never rounds them
local function strs(t)
  if type(t) == 'number' then return I(t) end
  if type(t) ~= 'table' then return t end
  local o = {}
  for k, v in pairs(t) do o[k] = strs(v) end
  return o
end
local function enc(t) return cjson.encode(strs(t)) end

local function err(kind, field, message)
  return {cjson.encode({error = kind, field = field, message = message}), 0}
end

local function state()
  return redis.call('HGETALL', K_ACCT), redis.call('HGETALL', K_BK),
    redis.call('HGETALL', K_RSV), redis.call('HGETALL', K_CTR)
end

-- the first answer for this op id, or an error for the same op id with other content
local function replay()
  local prev = redis.call('GET', K_OP)
  if not prev then return nil end
  local bar = string.find(prev, '|', 1, true)
  if string.sub(prev, 1, bar - 1) ~= FP then
    return err('opid_conflict', 'op_id', 'op id ' .. OP_ID .. ' was used for another request')
  end
  local a, b, r, c = state()
  return {string.sub(prev, bar + 1), 0, a, b, r, c}
end

local function ledger(verb, d, h)
  redis.call('XADD', (h or SELF).led, '*', 'op', verb, 'op_id', OP_ID, 'ts', I(NOW), 'd', enc(d))
end

-- record the answer under the op id (unless store == false) and return it with the state
local function finish(code, detail, store)
  local ans = enc({code = code, detail = detail or {}})
  if store ~= false then
    redis.call('SET', K_OP, FP .. '|' .. ans, 'EX', tonumber(CTX.ttl))
  end
  local a, b, r, c = state()
  return {ans, 1, a, b, r, c}
end

local function load_acct(h)
  local flat = redis.call('HGETALL', (h or SELF).acct)
  if #flat == 0 then return nil end
  local a = {}
  for i = 1, #flat, 2 do a[flat[i]] = flat[i + 1] end
  return a
end

local function unknown()
  return err('unknown', 'account_id', 'no such account')
end

-- this account, or nil and the error to return: "unknown" when it does not exist, "stale_meta"
-- when it is not the one the caller's lookup key named (its root, parent and bill-cycle day
-- came from a lookup key of another claim: the account was re-created since; the store
-- reloads the lookup key and retries)
local function open_acct()
  local a = load_acct()
  if not a then return nil, unknown() end
  if a.claim ~= CTX.claim then
    return nil, err('stale_meta', 'account_id', 'the account was re-created since its lookup key was read')
  end
  return a
end

local function dec_bucket(id, raw)
  local b = cjson.decode(raw)
  b.id = id
  b.remaining = N(b.remaining); b.initial = N(b.initial); b.reserved = N(b.reserved)
  b.valid_from = N(b.valid_from); b.priority = N(b.priority)
  if b.valid_to ~= nil then b.valid_to = N(b.valid_to) end
  return b
end

local function bucket_json(b)
  return enc({kind = b.kind, service = b.service, dest = b.dest, remaining = b.remaining,
    initial = b.initial, reserved = b.reserved, valid_from = b.valid_from,
    valid_to = b.valid_to, priority = b.priority, source = b.source})
end

local function load_buckets(h)
  local flat = redis.call('HGETALL', (h or SELF).bk)
  local list, by_id = {}, {}
  for i = 1, #flat, 2 do
    local b = dec_bucket(flat[i], flat[i + 1])
    list[#list + 1] = b
    by_id[b.id] = b
  end
  return list, by_id
end

local function save_bucket(b, h) redis.call('HSET', (h or SELF).bk, b.id, bucket_json(b)) end

local function valid(b, at)
  at = at or NOW
  return b.valid_from <= at and (b.valid_to == nil or at < b.valid_to)
end

-- x < y byte by byte (a shorter prefix first). Lua's own `<` on strings is strcoll, and
-- redis-server sets LC_COLLATE from its environment: the order would follow the locale.
local function bytes_lt(x, y)
  for i = 1, math.min(#x, #y) do
    local p, q = string.byte(x, i), string.byte(y, i)
    if p ~= q then return p < q end
  end
  return #x < #y
end

-- THE consumption order of buckets (accounts/snapshot.py consumption_order follows it):
-- soonest expiry first (no expiry last), then priority, then id byte by byte: a strict
-- total order
local function order(x, y)
  local xt, yt = x.valid_to or math.huge, y.valid_to or math.huge
  if xt ~= yt then return xt < yt end
  if x.priority ~= y.priority then return x.priority < y.priority end
  return bytes_lt(x.id, y.id)
end

local function dest_ok(b, dest)
  if b.dest == nil or b.dest == cjson.null then return true end
  if dest == nil or dest == '' or dest == cjson.null then return false end
  for _, d in ipairs(b.dest) do if d == dest then return true end end
  return false
end

-- valid unit buckets for (service, destination) with free units, in consumption order
-- the unit buckets that may cover usage of `service` to destination name `dest` that starts
-- at `at` (default NOW; online: the session's start, as the bill run judges a CDR at its
-- start), in consumption order
local function unit_candidates(list, service, dest, at)
  local c = {}
  for _, b in ipairs(list) do
    if b.kind == 'units' and valid(b, at) and (b.service == nil or b.service == service)
      and dest_ok(b, dest) and b.remaining - b.reserved > 0 then
      c[#c + 1] = b
    end
  end
  table.sort(c, order)
  return c
end

local function money_candidates(list)
  local c = {}
  for _, b in ipairs(list) do
    if b.kind == 'money' and valid(b) and b.remaining - b.reserved > 0 then c[#c + 1] = b end
  end
  table.sort(c, order)
  return c
end

-- balance + valid money buckets + credit limit - reserved; nil = unlimited
local function available(a, list)
  if a.cl == 'u' then return nil end
  local gifts = 0
  for _, b in ipairs(money_candidates(list)) do gifts = gifts + b.remaining - b.reserved end
  return N(a.bal) + gifts + N(a.cl) - N(a.rsv)
end

-- bucket delta helper: d.buckets[id][field] += v
local function bdelta(d, id, field, v)
  d.buckets = d.buckets or {}
  d.buckets[id] = d.buckets[id] or {}
  d.buckets[id][field] = (d.buckets[id][field] or 0) + v
end

-- take up to `need` from the given candidates' free amount; returns what was taken
-- (with `touched`, the buckets are only collected there, to be saved later by the caller)
local function take_free(cands, need, d, field, h, touched)
  local got = 0
  for _, b in ipairs(cands) do
    if got >= need then break end
    local t = math.min(need - got, b.remaining - b.reserved)
    if t > 0 then
      if field == 'reserved' then b.reserved = b.reserved + t else b.remaining = b.remaining - t end
      bdelta(d, b.id, field, field == 'reserved' and t or -t)
      if touched then touched[b.id] = b else save_bucket(b, h) end
      got = got + t
    end
  end
  return got
end

local function set_balance(a, v, h)
  a.bal = I(v)
  redis.call('HSET', (h or SELF).acct, 'bal', a.bal)
end

local function set_reserved(a, v, h)
  a.rsv = I(v)
  redis.call('HSET', (h or SELF).acct, 'rsv', a.rsv)
end

-- the balance once `amount` is charged (charge_money: free money buckets first), unwritten
local function balance_after(a, list, amount)
  local free = 0
  for _, b in ipairs(money_candidates(list)) do free = free + b.remaining - b.reserved end
  return N(a.bal) - math.max(0, amount - free)
end

-- an "amount" error naming `field` when `v` (a balance or reserved total an operation would
-- store) leaves -(2^53 - 1) .. 2^53 - 1, beyond which Lua doubles round; nil when it fits.
-- Each figure is one subtraction or addition of exact terms, so the test itself is exact.
local function out_of_range(v, field, what)
  if v <= MAXI and v >= -MAXI then return nil end
  return err('amount', field, 'the ' .. what .. ' would leave the exact range of 2^53 - 1 micro-units')
end

-- charge `amount` to an account: valid money buckets soonest expiry first, then the balance;
-- returns what came from buckets
local function charge_money(a, list, amount, d, h)
  local fb = take_free(money_candidates(list), amount, d, 'remaining', h)
  if amount - fb ~= 0 then
    set_balance(a, N(a.bal) - (amount - fb), h)
    d.balance = (d.balance or 0) - (amount - fb)
  end
  return fb
end

-- --- parent accounts: a child draws on its parent's money ----------------------------------
-- The parent's account and bucket list in a child's script; nil otherwise.
local function load_parent()
  if PAR == nil then return nil, nil end
  local pa = load_acct(PAR)
  if pa == nil then return nil, nil end
  local plist = load_buckets(PAR)
  return pa, plist
end

-- What the parent lends its child for a new hold: its available, never below 0 (nil =
-- unlimited); a parent that is not active lends nothing.
local function lends(pa, plist)
  if pa == nil or pa.status ~= 'active' then return 0 end
  local v = available(pa, plist)
  if v == nil then return nil end
  return math.max(v, 0)
end

-- the credit check's figure: own available, plus what the parent lends to a child
local function family_available(own, lend)
  if PAR == nil or own == nil then return own end
  if lend == nil then return nil end
  return own + lend
end

-- split `money` into (own part, parent part): the account's own available first, the parent
-- takes the rest up to `lend` (nil = no limit); what neither covers stays on the account
local function split(money, own, lend)
  if PAR == nil or own == nil then return money, 0 end
  local mine = math.min(money, math.max(own, 0))
  local theirs = money - mine
  if lend ~= nil then theirs = math.min(theirs, lend) end
  return money - theirs, theirs
end

-- The credit check of reserve and debit, before anything is written: the parent (if any),
-- the family's available, whether `amount` is denied (only money asked for is checked: 0
-- passes whatever the balance), and the split of `amount` into own and parent parts.
local function credit_check(a, list, amount)
  local pa, plist = load_parent()
  local own, lend = available(a, list), lends(pa, plist)
  local avail = family_available(own, lend)
  local denied = amount > 0 and avail ~= nil and amount > avail
  local mine, theirs = split(amount, own, lend)
  return pa, plist, avail, denied, mine, theirs
end

-- how many of `units` the candidate buckets can cover now (their free units, in order)
local function coverable(cands, units)
  local covered = 0
  for _, b in ipairs(cands) do covered = covered + math.min(units - covered, b.remaining - b.reserved) end
  return covered
end

-- adjust and refund: move the main balance by a signed `amount` (no credit check), with a
-- ledger entry `verb`; refused on a terminated account or beyond the exact range
local function move_balance(verb, amount, reason)
  local a, e = open_acct()
  if not a then return e end
  if a.status == 'terminated' then return err('invalid_state', 'account_id', 'account is terminated') end
  local bal = N(a.bal) + amount
  if bal > MAXI or bal < -MAXI then
    return err('amount', 'amount', 'the balance would leave the exact range of 2^53 - 1 micro-units')
  end
  set_balance(a, bal)
  ledger(verb, {balance = amount, reason = reason})
  return finish('ok', {balance = bal})
end

-- free every unit a reservation holds on its buckets; returns how many units that was
local function free_held_units(res, by_id, d)
  local units = 0
  for id, n in pairs(res.units) do
    local b = by_id[id]
    if b and N(n) > 0 then
      b.reserved = b.reserved - N(n)
      bdelta(d, id, 'reserved', -N(n))
      save_bucket(b)
      units = units + N(n)
    end
  end
  return units
end

-- a parent's ledger entry for a child's operation, when the parent's state changed
local function parent_ledger(verb, pd)
  if pd.balance ~= nil or pd.reserved ~= nil or pd.buckets ~= nil then ledger(verb, pd, PAR) end
end

-- an "amount" error naming the first counter that `counters` would take out of -(2^53 - 1) ..
-- 2^53 - 1 (HINCRBY itself would fail only past int64, after other writes); nil when all fit
local function counters_out_of_range(counters)
  for k, v in pairs(counters or {}) do
    local n = N(v)
    if n ~= 0 then
      local e = out_of_range(N(redis.call('HGET', K_CTR, k) or 0) + n, 'counters[' .. k .. ']', 'counter')
      if e then return e end
    end
  end
  return nil
end

local function add_counters(counters, d)
  if counters == nil then return end
  for k, v in pairs(counters) do
    local n = N(v)
    if n ~= 0 then
      redis.call('HINCRBY', K_CTR, k, n)
      d.counters = d.counters or {}
      d.counters[k] = n
    end
  end
end

-- an empty subscription (to = from: subscribed and ended the same day) is active on no day
local function sub_empty(s) return s.to ~= nil and s.to <= s.from end

local function sub_in_cycle(s)
  if CTX.cycle == nil then return false end
  if sub_empty(s) then return false end
  return s.from < CTX.ced and (s.to == nil or s.to > CTX.csd)
end

local function sub_today(s)
  return s.from <= CTX.today and (s.to == nil or CTX.today < s.to)
end

-- the id (and source) of subscription `si`'s allowance bucket for the current cycle:
-- allowance:<offer>/<allowance>:<cycle>, plus @<from date> when an earlier subscription in
-- the list is to the same offer, plus #<si> when one of those starts the same day too (only
-- an empty one can: two non-empty ones to the same offer never overlap). Subscriptions are
-- only ever appended and never change their offer or start: one id per subscription,
-- allowance and cycle, stable whoever computes it (accounts/snapshot.py allowance_buckets).
local function allowance_id(subs, si, al)
  local s = subs[si]
  local id = 'allowance:' .. s.offer .. '/' .. al.name .. ':' .. CTX.cycle
  local later, same_day = false, false
  for j = 1, si - 1 do
    if subs[j].offer == s.offer then
      later = true
      if subs[j].from == s.from then same_day = true end
    end
  end
  if same_day then return id .. '@' .. s.from .. '#' .. si end
  if later then return id .. '@' .. s.from end
  return id
end

-- grant allowances of subscriptions active in the current cycle; the bucket id is its source
-- (allowance_id), so a grant happens once whoever touches the account first
local function grant_cycle(a, only)
  if CTX.cycle == nil then return end
  if only == nil and a.granted == CTX.cycle then return end
  local subs = cjson.decode(a.subs or '[]')
  local nb, any = {}, false
  for si, s in ipairs(subs) do
    if (only == nil or only == si) and sub_in_cycle(s) then
      for ai, al in ipairs(s.allow or {}) do
        local id = allowance_id(subs, si, al)
        local vf, vt = N(CTX.cs), N(CTX.ce)
        if s.from_utc ~= nil then vf = math.max(vf, N(s.from_utc)) end
        if s.to_utc ~= nil then vt = math.min(vt, N(s.to_utc)) end
        local b = {id = id, kind = 'units', service = al.service, dest = al.dest,
          remaining = N(al.units), initial = N(al.units), reserved = 0, valid_from = vf,
          valid_to = vt, priority = si * 1000 + ai, source = id}
        if redis.call('HSETNX', K_BK, id, bucket_json(b)) == 1 then
          b.id = nil
          nb[id] = b
          any = true
        end
      end
    end
  end
  if only == nil then
    a.granted = CTX.cycle
    redis.call('HSET', K_ACCT, 'granted', CTX.cycle)
  end
  if any then ledger('grant', {new_buckets = nb}) end
end

-- a gift bucket from a promotion, valid valid_days x 86400 s from `start` (default now);
-- returns (id, bucket) after writing it
local function gift(g, kind_source, priority, n, start)
  local id = 'gift:' .. OP_ID .. ':' .. n
  start = start or NOW
  local b = {kind = 'units', service = g.service, remaining = N(g.units), initial = N(g.units),
    reserved = 0, valid_from = start, valid_to = start + N(g.valid_days) * 86400,
    priority = priority, source = kind_source}
  if g.money ~= nil then
    b.kind = 'money'; b.service = nil
    b.remaining = N(g.money); b.initial = N(g.money)
  end
  b.id = id
  save_bucket(b)
  b.id = nil
  return id, b
end

-- two subscriptions active on a common day (an empty one is active on none)
local function overlap(x, y)
  if sub_empty(x) or sub_empty(y) then return false end
  return x.from < (y.to or '9999-99-99') and y.from < (x.to or '9999-99-99')
end

-- conflicts of a new subscription with the existing ones, or nil
local function sub_conflict(a, s)
  for _, o in ipairs(cjson.decode(a.subs or '[]')) do
    if overlap(o, s) then
      if s.base and o.base then
        return err('invalid_state', 'offer', 'a base offer (' .. o.offer .. ') is already active then')
      end
      if o.offer == s.offer then
        return err('invalid_state', 'offer', 'offer ' .. s.offer .. ' is already subscribed then')
      end
    end
  end
  return nil
end

-- record a subscription, its subscribe gifts and its allowances for the current cycle;
-- the gifts are valid from the subscription's start (local midnight of `from`), or from now
-- when that is past, so a subscription taken ahead of time gets them when it begins. An
-- empty subscription gets no gift (and no allowance: sub_in_cycle).
local function add_sub(a, s, gifts_from)
  local subs = cjson.decode(a.subs or '[]')
  local idx = #subs + 1
  subs[idx] = s
  a.subs = cjson.encode(subs)
  redis.call('HSET', K_ACCT, 'subs', a.subs)
  local nb = {}
  local start = math.max(NOW, N(s.from_utc))
  local gifts = s.gifts or {}
  if sub_empty(s) then gifts = {} end
  for gi, g in ipairs(gifts) do
    local id, b = gift(g, 'gift:subscribe:' .. s.offer, 100000 + idx * 1000 + gi, gifts_from + gi,
      start)
    nb[id] = b
  end
  ledger('subscribe', {subscription = {offer = s.offer, from = s.from, to = s.to},
    new_buckets = nb})
  grant_cycle(a, idx)
  return #gifts
end
