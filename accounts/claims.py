"""The global index keys as claims: how a create takes `acct:<id>` and `msisdn:<n>`, and how a
name is resolved to an account that was written.

The index keys live in other cluster slots than the account, so no script can write both.
Each key's value names the create that claimed it (its token); the account hash records the
token of the create that wrote it (`claim`). A claim is real once its account is written. A
claim whose create never wrote (a lost connection, a crash, a create still running) is taken
over by another create: it is fenced first, in the account's slot (`lua/index/fence.lua`), so
that its create can no longer write, then swapped (`swap.lua`). A failed create gives back only
the keys that still hold its own value (`drop.lua`). See docs/accounts.md "Creation".
"""

from __future__ import annotations

from accounts.cluster import get_many
from accounts.errors import AccountError, AccountExists
from accounts.keys import (
    Claim,
    check_account_id,
    lookup_key,
    msisdn_digits,
    msisdn_key,
    msisdn_value,
    parse_lookup,
    parse_msisdn,
)
from accounts.model import text

FENCE_TTL_S = 35 * 86400  # as long as op ids: a fenced create never writes within that time
_TAKE_TRIES = 64  # rounds of taking one key over while other creates keep taking it


def _take(r, scripts, key: str, value: str, is_mine, holder, refusal: AccountExists) -> bool:
    """Claim index key ``key`` for ``value``: SET NX, else keep a value ``is_mine`` accepts,
    else take it over from a ``holder(value) -> (keys, token)`` whose account was never
    written (fence it, then swap). Returns whether this call set the key; raises ``refusal``
    when the key belongs to a written account."""
    for _ in range(_TAKE_TRIES):
        if r.set(key, value, nx=True):
            return True
        raw = r.get(key)
        if raw is None:
            continue
        current = text(raw)
        if is_mine(current):
            return False
        keys, token = holder(current)
        if scripts.fence(r, [keys.account, keys.fence(token)], [token, FENCE_TTL_S]) == 1:
            raise refusal
        if scripts.swap(r, [key], [current, value]) == 1:
            return True
    raise refusal


def take_id(r, scripts, mine: Claim) -> tuple[Claim, bool]:
    """The id's lookup key for ``mine``, or this request's earlier claim of it (same op id and
    parameters: an interrupted call): (the claim held, whether this call set the key)."""
    account_id = mine.keys.account_id
    seen = []

    def is_mine(value: str) -> bool:
        seen.append(parse_lookup(account_id, value))
        return seen[-1].same_request(mine)

    def holder(value: str):
        c = parse_lookup(account_id, value)
        return c.keys, c.token

    refusal = AccountExists("account_id", f"account {account_id!r} already exists")
    if _take(r, scripts, lookup_key(account_id), mine.value, is_mine, holder, refusal):
        return mine, True
    return seen[-1], False


def take_msisdns(r, scripts, claim: Claim, numbers, held: list) -> None:
    """Claim each MSISDN key for ``claim`` (one round trip when all are free), adding the
    (key, value) pairs this call set to ``held``."""
    account_id = claim.keys.account_id
    value = msisdn_value(claim.keys, claim.token)
    pipe = r.pipeline(transaction=False)
    for n in numbers:
        pipe.set(msisdn_key(n), value, nx=True)
    busy = []
    for n, ok in zip(numbers, pipe.execute(), strict=True):
        if ok:
            held.append((msisdn_key(n), value))
        else:
            busy.append(n)

    def holder(current: str):
        keys, token = parse_msisdn(current)
        # another create of this same account: only the create holding the account's lookup
        # key may take its claims (the others were fenced when they lost the id)
        if keys.account_id == account_id and text(r.get(lookup_key(account_id))) != claim.value:
            raise AccountExists(
                "account_id", f"account {account_id!r} is being created by another request"
            )
        return keys, token

    own = msisdn_digits(account_id)
    for n in busy:
        if n == own:
            refusal = AccountExists("account_id", f"{account_id!r} is another account's MSISDN")
        else:
            refusal = AccountExists("msisdns", f"MSISDN {n} belongs to another account")
        if _take(r, scripts, msisdn_key(n), value, value.__eq__, holder, refusal):
            held.append((msisdn_key(n), value))


def give_back(r, scripts, held) -> None:
    """Delete each (key, value) claim of a refused create, where the key still holds it."""
    for key, value in held:
        scripts.drop(r, [key], [value])


def written_owner(r, subscriber: str) -> str | None:
    """The account that ``subscriber`` (an id, or an MSISDN with an optional '+') names and
    that its claim wrote, the id first; None when there is none."""
    names = []
    try:
        names.append((check_account_id(subscriber), lookup_key(subscriber)))
    except AccountError:
        pass
    number = msisdn_digits(subscriber)
    if number is not None:
        names.append((None, msisdn_key(number)))
    found = []  # (account id, keys, token)
    for (account_id, _), raw in zip(names, get_many(r, [k for _, k in names]), strict=True):
        if raw is None:
            continue
        if account_id is not None:
            c = parse_lookup(account_id, text(raw))
            found.append((account_id, c.keys, c.token))
        else:
            keys, token = parse_msisdn(text(raw))
            found.append((keys.account_id, keys, token))
    if not found:
        return None
    pipe = r.pipeline(transaction=False)
    for _, keys, _ in found:
        pipe.hget(keys.account, "claim")
    for (account_id, _, token), written_by in zip(found, pipe.execute(), strict=True):
        if written_by is not None and text(written_by) == token:
            return account_id
    return None
