"""`ccs demo` (what `make demo` runs): the expected story with exact amounts, nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

CCS = str(Path(sys.executable).with_name("ccs"))


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_demo_tells_the_story_and_stops_everything(tmp_path):
    env = dict(os.environ)
    env.pop("CCS_REDIS_URL", None)
    demo = subprocess.Popen([CCS, "demo", "--data-dir", str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = demo.communicate(timeout=180)
    assert demo.returncode == 0, err
    lines = out.splitlines()
    expected = [
        "health over gRPC: SERVING",
        "created alice: prepaid, credit limit 0.00, offers ['smart_m'], 3 bucket(s)",
        "created acme: postpaid, credit limit 100.00, offers ['flat_l'], 1 bucket(s)",
        "alice topped up 25.00: balance 25.00, available 27.00",
        "the same top-up retried: applied=False, balance still 25.00",
        "rated 150 s, charge 0.3500 (band peak)",
        # the bundle covers the mobile call; the EU call (no band) is 120 s at 0.15 a minute
        "alice called 4915112345678 for 125 s over Charging (I + U + T): granted 60 s then "
        "60 s, paid 0.0000, available 27.00 -> 27.00",
        "alice called 33123456789 for 95 s over Charging (I + U + T): granted 60 s then "
        "60 s, paid 0.3000, available 27.00 -> 26.70",
        "rated 7, duplicate 1, rejected 4, total net charge 1.9010",
        "c-0008: rejected (malformed:usage)",
        "ledger audit of every account: clean",
        "node and redis-server stopped",
    ]
    for text in expected:
        assert any(text in line for line in lines), f"missing {text!r} in:\n{out}"
    # the redis-server it started is gone
    redis_pid = int(re.search(r"redis-server \S+ \(pid (\d+)\)", out).group(1))
    assert not _alive(redis_pid)
