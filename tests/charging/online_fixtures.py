"""A small online catalog and helpers shared by the online charging tests (amounts by hand).

Tuesday 2026-11-10 13:00 Berlin (12:00 UTC) is in the peak band: a DE_MOBILE call costs
0.0500 to connect plus 0.1200 a minute, 60 s first then 30 s increments.
"""

from __future__ import annotations

from datetime import UTC, datetime

from charging import charge as C

T0 = int(datetime(2026, 11, 10, 12, tzinfo=UTC).timestamp())  # Tuesday, peak
NIGHT = int(datetime(2026, 11, 10, 22, tzinfo=UTC).timestamp())  # 23:00 Berlin, offpeak
MOBILE = "4915112345678"
FIXED = "4930123456"

CATALOG = """\
currency: EUR
timezone: Europe/Berlin
rounding: {decimals: 4, method: half_up}
destinations:
  DE_MOBILE: ["49151"]
  DE_FIXED: ["49"]
time_bands:
  peak: {days: [mon, tue, wed, thu, fri], from: "08:00", to: "20:00"}
  offpeak: {}
tariffs:
  std:
    voice:
      - {destination: DE_MOBILE, band: peak, price: "0.1200", per: 60, increments: [60, 30], connect_fee: "0.0500"}
      - {destination: DE_MOBILE, price: "0.0600", per: 60, increments: [60, 1]}
      - {destination: DE_FIXED, price: "0.0200", per: 60, increments: [1, 1]}
    sms:
      - {price: "0.0900"}
    data:
      - per: 1048576
        increments: [1024, 1024]
        tiers:
          - {upto: 1073741824, price: "0.0100"}
          - {price: "0.0020"}
discounts:
  loyal_voice:
    service: voice
    basis: usage
    tiers:
      - {from: 0, percent: "0"}
      - {from: 6000, percent: "10"}
      - {from: 30000, percent: "25"}
offers:
  basic:
    tariff: std
    discounts: [loyal_voice]
  bundle:
    tariff: std
    allowances:
      - {name: voice_120, service: voice, units: 120, destinations: [DE_MOBILE]}
"""


def voice(rg=1, *, requested=None, used=0, dest=MOBILE):
    return C.UnitRequest(rg, "voice", dest, requested, used)


def req(kind, sid, n, units, *, sub="alice", t=T0, action=None):
    return C.Request(sid, kind, n, sub, t, action, tuple(units))


class Clock:
    """A settable clock for the store and the node, at T0 first."""

    def __init__(self):
        self.t = T0

    def __call__(self):
        return self.t
