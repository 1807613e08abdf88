"""The account store attacked from outside (issue 11): racing creates, a connection lost in the
middle of a create, a cache outliving the data, one number written two ways, an id that is
another account's MSISDN, inputs that would wrap inside the scripts.

Everything runs against the real test redis-server; a lost connection is a real one, cut by a
TCP relay (`Relay`) between the store and the server.
"""

from __future__ import annotations

import socket
import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from accounts.audit import audit
from accounts.model import AccountError, AccountExists, InvalidAmount, UnknownAccount
from accounts.scripts import registry
from accounts.store import AccountStore
from rating.model import Allowance, Offer

EUR = 1_000_000
MAXI = 2**53 - 1


class Relay:
    """A TCP relay to the test redis-server that acts once on the first request containing
    `trigger` (a script's SHA1): "drop_request" closes every connection and stops listening
    without forwarding it (the server is gone for the client); "drop_reply" forwards it and
    closes that connection when the reply arrives, without passing it on (the script ran, its
    reply is lost); a callable runs first (in the relay's thread), then the request goes on."""

    def __init__(self, upstream_port: int, trigger: str, action):
        self.upstream_port = upstream_port
        self.trigger = trigger.encode()
        self.action = action
        self.fired = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, retry=Retry(NoBackoff(), 0))

    def close(self):
        for s in [self.listener, *self.sockets]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [down, up]
            swallow = threading.Event()
            threading.Thread(target=self._requests, args=(down, up, swallow), daemon=True).start()
            threading.Thread(target=self._replies, args=(up, down, swallow), daemon=True).start()

    def _requests(self, down, up, swallow):
        try:
            while data := down.recv(1 << 16):
                if self.trigger in data and not self.fired.is_set():
                    self.fired.set()
                    if self.action == "drop_request":
                        self.close()
                        return
                    if self.action == "drop_reply":
                        swallow.set()
                    else:
                        self.action()
                up.sendall(data)
        except OSError:
            pass

    def _replies(self, up, down, swallow):
        try:
            while data := up.recv(1 << 16):
                if swallow.is_set():
                    break
                down.sendall(data)
        except OSError:
            pass
        for s in (down, up):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def relay(redis_server, redis_client):
    registry().load_all(redis_client)  # the trigger is the EVALSHA of a loaded script
    made = []

    def make(action, verb="create") -> Relay:
        made.append(Relay(redis_server.port, registry().scripts[verb].sha, action))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_a_create_that_loses_the_race_leaves_the_winner_reachable(store, open_store, relay):
    # A claims the id and its MSISDN; before A's script runs, B (same parameters, its own op
    # id) creates the account. Exactly one of them is told "created", and the account stays
    # reachable by id and MSISDN: A's clean-up never removes B's keys.
    b = store
    answers = {}

    def b_creates_first():
        answers["b"] = b.create("X1", msisdns=["491510001"], op_id="op-b")

    a = open_store(relay(b_creates_first).client())
    with pytest.raises(AccountExists) as e:
        a.create("X1", msisdns=["491510001"], op_id="op-a")
    assert e.value.field == "account_id"
    assert (answers["b"].applied, answers["b"].code) == (True, "ok")
    assert [b.resolve("X1"), b.resolve("491510001")] == ["X1", "X1"]
    assert b.topup("X1", 5 * EUR, op_id="t").detail["balance"] == 5 * EUR
    with pytest.raises(AccountExists):
        b.create("X1", msisdns=["491510001"], op_id="op-c")
    assert audit(b.r) == []


def test_concurrent_creates_of_the_same_ids_each_have_exactly_one_winner(
    redis_server, redis_client, open_store
):
    creators, ids = 6, [f"R{i:03d}" for i in range(40)]
    barrier = threading.Barrier(creators)
    results: dict[str, list[str]] = {i: [] for i in ids}
    lock = threading.Lock()
    failures = []

    def run(n):
        s = open_store(redis_server.client())
        try:
            for i in ids:
                barrier.wait(timeout=60)
                try:
                    r = s.create(i, msisdns=[f"4917{i[1:]}00"], op_id=f"{n}-{i}")
                    outcome = "created" if (r.applied, r.code) == (True, "ok") else repr(r)
                except AccountExists:
                    outcome = "exists"
                with lock:
                    results[i].append(outcome)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(creators)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert {i: sorted(v) for i, v in results.items()} == {
        i: ["created"] + ["exists"] * (creators - 1) for i in ids
    }
    s = open_store(redis_client)
    assert [s.resolve(i) for i in ids] == ids
    assert [s.resolve(f"4917{i[1:]}00") for i in ids] == ids
    assert [s.topup(i, EUR, op_id=f"t-{i}").detail["balance"] for i in ids] == [EUR] * len(ids)
    assert audit(redis_client) == []


def test_the_audit_reports_an_account_without_its_lookup_key_and_keys_without_account(
    store, redis_client
):
    store.create_account("A", msisdns=["491510001"])
    store.create_account("B", msisdns=["491510002"])
    assert audit(redis_client) == []
    lookup_b = redis_client.get("acct:B").decode()
    redis_client.delete("acct:A")  # what a loser's clean-up used to do
    redis_client.set("msisdn:491519999", redis_client.get("msisdn:491510002"))
    assert sorted((f.account, f.field, f.replayed) for f in audit(redis_client)) == [
        ("A", "lookup", "account without its lookup key"),
        ("B", "msisdn:491519999", "not one of the account's MSISDNs"),
    ]
    # a lookup key and an MSISDN key whose create never wrote its account
    redis_client.flushall()
    redis_client.set("acct:B", lookup_b)
    redis_client.set("msisdn:491510002", "B B " + lookup_b.split()[3])
    assert sorted((f.account, f.field, f.replayed) for f in audit(redis_client)) == [
        ("B", "account", "lookup key without account"),
        ("B", "msisdn:491510002", "no account written by this claim"),
    ]


# --- a connection lost in the middle of a create (finding 6) ----------------------------------


def test_a_create_cut_before_its_script_is_completed_by_the_same_op_id(store, open_store, relay):
    cut = relay("drop_request")
    with pytest.raises(redis.ConnectionError):
        open_store(cut.client()).create("X1", msisdns=["491510001"], op_id="c-1")
    assert cut.fired.is_set()
    for name in ("X1", "491510001"):
        with pytest.raises(UnknownAccount):
            store.resolve(name)
    again = store.create("X1", msisdns=["491510001"], op_id="c-1")
    assert (again.applied, again.code) == (True, "ok")
    assert [store.resolve("X1"), store.resolve("491510001")] == ["X1", "X1"]
    assert [e["op"] for e in store.ledger("X1")] == ["create"]
    assert audit(store.r) == []


def test_a_create_cut_before_its_script_blocks_neither_its_id_nor_its_msisdns(
    store, open_store, relay
):
    cut = relay("drop_request")
    with pytest.raises(redis.ConnectionError):
        open_store(cut.client()).create("X1", msisdns=["491510001", "491510002"], op_id="c-1")
    # the MSISDN is free for another account, the id for another op id
    assert store.create("Y1", msisdns=["491510002"], op_id="y").code == "ok"
    assert store.create("X1", msisdns=["491510001"], op_id="c-2").applied is True
    assert [store.resolve(n) for n in ("X1", "491510001", "491510002")] == ["X1", "X1", "Y1"]
    assert store.get_account("X1").msisdns == ("491510001",)
    # the first op id comes back: the id is taken now
    with pytest.raises(AccountExists):
        store.create("X1", msisdns=["491510001", "491510002"], op_id="c-1")
    assert [store.resolve(n) for n in ("X1", "491510001", "491510002")] == ["X1", "X1", "Y1"]
    assert audit(store.r) == []


def test_a_create_whose_reply_is_lost_stays_created(store, open_store, relay):
    cut = relay("drop_reply")
    with pytest.raises(redis.ConnectionError):
        open_store(cut.client()).create("X1", msisdns=["491510001"], op_id="c-1")
    assert cut.fired.is_set()
    assert [store.resolve("X1"), store.resolve("491510001")] == ["X1", "X1"]
    again = store.create("X1", msisdns=["491510001"], op_id="c-1")
    assert (again.applied, again.code, again.account.id) == (False, "ok", "X1")
    with pytest.raises(AccountExists):
        store.create("X1", msisdns=["491510001"], op_id="c-2")
    with pytest.raises(AccountExists):
        store.create("Y1", msisdns=["491510001"], op_id="y")
    assert audit(store.r) == []


# --- the account cache outliving the data (finding 8) -----------------------------------------


def test_a_cached_account_recreated_with_another_parent_is_written_at_its_new_keys(
    store, open_store, redis_client
):
    node = open_store(redis_client)  # a running node: caches X1 as a root account
    store.create_account("X1")
    assert node.topup("X1", EUR, op_id="t-1").detail["balance"] == EUR
    redis_client.flushdb()  # Redis lost its data
    store.create_account("P1", credit_limit=None)
    store.create_account("X1", parent="P1")
    assert node.topup("X1", 2 * EUR, op_id="t-2").detail["balance"] == 2 * EUR
    assert node.account_keys("X1").base == "{a:P1}:X1"
    held = node.reserve("X1", "s1", op_id="r-1", money=5 * EUR)  # draws on its new parent
    assert (held.code, held.detail["from_parent"]) == ("ok", 3 * EUR)
    assert store.get_account("X1").balance == 2 * EUR
    assert store.get_account("P1").reserved == 3 * EUR
    assert redis_client.keys("{a:X1}*") == []
    assert audit(redis_client) == []


def test_a_cached_bill_cycle_day_is_checked_by_the_script(
    store, open_store, redis_client, make_catalog
):
    # 10 Nov 2026: with bill-cycle day 1 the cycle is 2026-11, with day 15 it is 2026-10
    offer = Offer("voice_pack", None, allowances=(Allowance("v100", "voice", 6000, None),))
    catalog = make_catalog({"voice_pack": offer})
    cli, node = AccountStore(redis_client, catalog), AccountStore(redis_client, catalog)
    cli.clock = node.clock = store.clock
    cli.create_account("X1", offers=["voice_pack"])
    assert node.get_account("X1").bill_cycle_day == 1  # cached
    redis_client.flushdb()
    cli.create_account("X1", offers=["voice_pack"], bill_cycle_day=15)
    assert node.topup("X1", EUR, op_id="t-1").code == "ok"
    assert [b.id for b in cli.get_account("X1").buckets] == ["allowance:voice_pack/v100:2026-10"]
    assert audit(redis_client) == []


# --- one number, one account (findings 9 and 18) ----------------------------------------------


def test_an_msisdn_is_stored_and_looked_up_as_e164_digits(store):
    store.create_account("P1", msisdns=["+4915550001"])
    with pytest.raises(AccountExists) as e:
        store.create_account("P2", msisdns=["4915550001"])
    assert e.value.field == "msisdns"
    assert store.get_account("P1").msisdns == ("4915550001",)
    assert [store.resolve("+4915550001"), store.resolve("4915550001")] == ["P1", "P1"]
    with pytest.raises(UnknownAccount):
        store.get_account("P2")


@pytest.mark.parametrize("number", [
    "004915550001", "04915550001", "49 15550001", "49-155-50001", "+49 15550001",
    "\u0664\u0669\u0661\u0665\u0665\u0665", "\uff14\uff19\uff11\uff15\uff15", "+", "49",
    "4915550001234567", "+0491555", " 4915550001", "4915550001\n",
])  # fmt: skip
def test_an_msisdn_not_in_international_digits_is_refused(store, number):
    with pytest.raises(AccountError) as e:
        store.create_account("P1", msisdns=[number])
    assert e.value.field == "msisdns"
    assert e.value.message == (
        "expected an international number: an optional '+' and 3-15 digits, country code"
        f" first (no leading 0, spaces or dashes), got {number!r}"
    )
    with pytest.raises(UnknownAccount):
        store.get_account("P1")


def test_an_account_id_and_another_accounts_msisdn_never_coincide(store):
    store.create_account("A", msisdns=["4915550001"])
    with pytest.raises(AccountExists) as e:
        store.create_account("4915550001")
    assert (e.value.field, e.value.message) == (
        "account_id", "'4915550001' is another account's MSISDN"
    )
    store.create_account("4915550002")
    with pytest.raises(AccountExists) as e:
        store.create_account("B", msisdns=["+4915550002"])
    assert (e.value.field, e.value.message) == (
        "msisdns", "MSISDN 4915550002 belongs to another account"
    )
    # an account may list its own id as its MSISDN
    store.create_account("4915550003", msisdns=["4915550003"])
    assert [store.resolve(x) for x in ("4915550001", "4915550002", "+4915550003")] == [
        "A", "4915550002", "4915550003"
    ]
    with pytest.raises(UnknownAccount):
        store.get_account("B")
    assert audit(store.r) == []


# --- inputs that would wrap inside the scripts ------------------------------------------------


def test_a_counter_beyond_the_exact_range_is_refused_before_anything_is_written(store):
    store.create_account("A", credit_limit=None)
    store.debit("A", op_id="d-1", charge=EUR, counters={"2026-11|tier|voice": MAXI})
    before = store.get_account("A")
    for verb in ("debit", "commit"):
        with pytest.raises(InvalidAmount) as e:
            if verb == "debit":
                store.debit("A", op_id="d-2", charge=EUR, counters={"2026-11|tier|voice": 1})
            else:
                store.commit("A", "s", op_id="c-2", charge=EUR,
                             counters={"2026-11|tier|voice": 1})
        assert e.value.field == "counters[2026-11|tier|voice]"
    assert store.get_account("A") == before
    assert [x["op"] for x in store.ledger("A")] == ["create", "debit"]
    assert store.debit("A", op_id="d-3", charge=EUR,
                       counters={"2026-11|tier|voice": -MAXI}).code == "ok"


def test_a_reservation_validity_beyond_30_days_is_refused(store):
    store.create_account("A", credit_limit=None)
    with pytest.raises(AccountError) as e:
        store.reserve("A", "s", op_id="r", money=EUR, validity_s=10**20)
    assert (e.value.field, e.value.message) == (
        "validity_s", "at most 2592000 s (30 days), got 100000000000000000000"
    )
    assert store.get_account("A").reserved == 0
    assert store.reserve("A", "s", op_id="r", money=EUR, validity_s=2592000).code == "ok"
