"""docs/grafana/ccs-node.json asks only for series a real node exports, with its labels."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc

from accounts.store import AccountStore
from accounts.sweeper import SweeperStats
from charging import charge as C
from charging.server import build_node
from proto.ccs.v1 import charging_pb2 as pb
from proto.ccs.v1 import charging_pb2_grpc
from rating.catalog import parse_catalog
from rating.compiler import compile_catalog
from tests.charging.online_fixtures import CATALOG

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "ccs-node.json"


def test_every_series_of_the_dashboard_is_on_the_nodes_metrics_page(redis_client):
    catalog = parse_catalog(CATALOG)
    store = AccountStore(redis_client, catalog)
    store.create("alice", credit_limit=None, offers=("basic",))
    charger = C.Charger(store, catalog, compile_catalog(catalog), validity_s=300)
    node = build_node("127.0.0.1:0", store=store, catalog=catalog, charger=charger,
                      metrics_listen="127.0.0.1:0", max_workers=4,
                      sweeper_stats=SweeperStats())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{node.port}") as channel:
            stub = charging_pb2_grpc.ChargingStub(channel)
            stub.Charge(pb.ChargeRequest(session_id="s", request_number=0, subscriber="alice",
                                         request_type=pb.EVENT, event_action=pb.CHECK_BALANCE))
        with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics",
                                    timeout=10) as page:
            text = page.read().decode()
    finally:
        node.stop(0)
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    for expr in exprs:
        for name in re.findall(r"\bccs_[a-z_]+", expr):
            assert re.search(rf"^{name}[{{ ]", text, re.M), f"{name} is not exported"
    # the latency panels select the Charge method by the label the node writes
    assert re.search(r'^ccs_request_seconds_bucket\{.*method="ccs.v1.Charging/Charge"', text, re.M)
