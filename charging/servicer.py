"""ccs.v1.Charging: protobuf <-> the credit-control engine (`charging.charge`).

Validates every request before anything is read or written: a malformed one is
INVALID_ARGUMENT naming the field; everything the contract answers with a result code
(unknown subscriber, unknown session, no credit, ...) is a normal ChargeResponse.
"""

from __future__ import annotations

import logging

import grpc
import redis

from accounts.errors import AccountError
from charging import charge as C
from proto.ccs.v1 import charging_pb2, charging_pb2_grpc, common_pb2
from rating.money import format_money

log = logging.getLogger("ccs.charging")

MAX_UNITS = 32  # rating groups in one request
MAX_TEXT = 256  # session ids, subscribers, services
MAX_DEST = 18  # destination digits (what the rating engine encodes)
MIN_TIME, MAX_TIME = 0, 253_370_764_800  # 1970-01-01 .. 9998-12-31
_FUA = charging_pb2.ServiceGrant.FinalUnitAction


class BadRequest(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def _text(value: str, field: str, *, required: bool = True, limit: int = MAX_TEXT) -> str:
    if required and not value:
        raise BadRequest(field, "required")
    if len(value) > limit:
        raise BadRequest(field, f"at most {limit} characters, got {len(value)}")
    if value != value.strip() or not value.isprintable():
        raise BadRequest(field, "must be printable with no surrounding spaces")
    return value


def _amount(units, unit: str, field: str) -> int | None:
    """The units of `unit` (seconds, bytes, events) a Units message carries; None when unset."""
    for name in ("seconds", "bytes", "events"):
        v = getattr(units, name)
        if v < 0:
            raise BadRequest(f"{field}.{name}", f"must not be negative, got {v}")
    value = getattr(units, unit)
    others = [n for n in ("seconds", "bytes", "events") if n != unit and getattr(units, n)]
    if others:
        raise BadRequest(f"{field}.{others[0]}", f"this service counts {unit}")
    return value


def to_request(msg: charging_pb2.ChargeRequest, catalog) -> C.Request:
    """A ChargeRequest as the engine's Request; BadRequest names the first bad field."""
    sid = _text(msg.session_id, "session_id")
    if "/" in sid:  # record ids are <session>/<rating group>/<request number>
        raise BadRequest("session_id", "must not contain '/'")
    kind = charging_pb2.RequestType.Name(msg.request_type) if msg.request_type in (1, 2, 3, 4) \
        else None
    if kind is None:
        raise BadRequest("request_type", "must be INITIAL, UPDATE, TERMINATE or EVENT")
    action = None
    if kind == "EVENT":
        if msg.event_action not in (1, 2, 3, 4):
            raise BadRequest("event_action", "an EVENT needs DIRECT_DEBIT, REFUND, "
                             "CHECK_BALANCE or PRICE_ENQUIRY")
        action = charging_pb2.EventAction.Name(msg.event_action)
    subscriber = _text(msg.subscriber, "subscriber")
    event_time = None
    if msg.HasField("event_time"):
        t = msg.event_time.seconds
        if not MIN_TIME <= t <= MAX_TIME:
            raise BadRequest("event_time", "must be between 1970 and 9998")
        event_time = int(t)
    if len(msg.units) > MAX_UNITS:
        raise BadRequest("units", f"at most {MAX_UNITS} rating groups, got {len(msg.units)}")
    if kind in ("INITIAL", "UPDATE") or (kind == "EVENT" and action in (
            "DIRECT_DEBIT", "PRICE_ENQUIRY")):
        if not msg.units and kind != "UPDATE":
            raise BadRequest("units", "at least one rating group is required")
    units, seen = [], set()
    for i, u in enumerate(msg.units):
        f = f"units[{i}]"
        if u.rating_group in seen:
            raise BadRequest(f"{f}.rating_group", f"rating group {u.rating_group} is listed twice")
        seen.add(u.rating_group)
        service = _text(u.service, f"{f}.service", required=kind in ("INITIAL", "EVENT"))
        dest = u.destination
        if dest.startswith("+"):
            dest = dest[1:]
        if len(dest) > MAX_DEST or (dest and not (dest.isascii() and dest.isdigit())):
            raise BadRequest(f"{f}.destination", f"expected up to {MAX_DEST} digits, "
                             f"got {u.destination!r}")
        unit = C.unit_of(catalog, service) if service else "events"
        # an empty Requested-Service-Unit asks for the service's default quota
        requested = (_amount(u.requested, unit, f"{f}.requested") or None) \
            if u.HasField("requested") else None
        used = _amount(u.used, unit, f"{f}.used") if u.HasField("used") else 0
        money = None
        if u.HasField("requested") and u.requested.money:
            # no service of the catalog is counted in money, and a network element gives no
            # money back: refunds of an amount are Accounts.Refund, on the admin listener
            raise BadRequest(f"{f}.requested.money", "units are seconds, bytes or events; "
                             "a refund of an amount goes through Accounts.Refund")
        units.append(C.UnitRequest(u.rating_group, service, dest, requested, used or 0, money))
    return C.Request(sid, kind, int(msg.request_number), subscriber, event_time, action,
                     tuple(units))


def to_response(msg: charging_pb2.ChargeRequest, ans: C.Answer, decimals: int):
    grants = []
    for g in ans.grants:
        granted = {g.unit: g.units}
        if g.money is not None:
            granted["money"] = format_money(g.money, 6 if g.money % 10 ** (6 - decimals)
                                            else decimals)
        grants.append(charging_pb2.ServiceGrant(
            rating_group=g.rating_group, result_code=g.result_code,
            granted=common_pb2.Units(**granted),
            validity_time_s=g.validity_s,
            final_unit_action=_FUA.TERMINATE if g.final else _FUA.NONE))
    return charging_pb2.ChargeResponse(
        result_code=ans.result_code, session_id=msg.session_id,
        request_number=msg.request_number, grants=grants,
        charged=money_text(ans.charged, decimals),
        available="" if ans.available is None else money_text(ans.available, decimals),
        error_message=ans.error_message)


def money_text(micro: int, decimals: int) -> str:
    """An amount with the catalog's decimals when it has no more, else all six."""
    return format_money(micro, decimals if micro % 10 ** (6 - decimals) == 0 else 6)


class ChargingService(charging_pb2_grpc.ChargingServicer):
    def __init__(self, charger: C.Charger, notifier=None):
        self.charger = charger
        self.notifier = notifier
        self.decimals = charger.compiled.decimals

    def Charge(self, request, context):
        try:
            req = to_request(request, self.charger.catalog)
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            ans = self.charger.charge(req)
        except C.Contention as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except AccountError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis unavailable: {exc}")
        if self.notifier is not None:
            self.notifier.after_charge(req, ans, self.charger._now())
        return to_response(request, ans, self.decimals)

    def WatchNotifications(self, request, context):
        from charging.notifications import watch

        accounts = set(request.accounts)
        for account in accounts:
            if len(account) > MAX_TEXT:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "accounts: an id is too long")
        yield from watch(self.charger.store.r, accounts, context.is_active)
