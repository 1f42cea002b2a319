"""Peer to peer, a probe separates the two ends: the same aiortc call as
tests/test_attribution_aiortc.py, with ONLY the client's uplink impaired,
and each participant also running the sidecar probe; the client's probe
crosses the same impaired uplink (as a second connection over one access
network does). The sidecar's count of the client's probe media names the
client's uplink, and the clinician's clean probe download clears the
clinician's downlink: the verdict is "the client's connection (sending)",
not "between the two".

Replay with BONDLINE_ATTRIBUTION_PROBE_SEED=<seed printed>.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.login import create_user, login
from tests.support.shared_server import running_server
from tests.test_attribution_aiortc import EMAIL, PASSWORD, Phase, _call

SEED = int(os.environ.get("BONDLINE_ATTRIBUTION_PROBE_SEED", random.SystemRandom().randrange(2**31)))


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Phase], dict[str, Any]]]:
    print(f"BONDLINE_ATTRIBUTION_PROBE_SEED={SEED}")
    rng = random.Random(SEED)
    # No outage here: a probe whose media stops for seconds ends its run and
    # reconnects (docs/probe.md), so it would miss what follows.
    phases = [Phase("random", params={"loss": rng.uniform(0.05, 0.15)}),
              Phase("bursty", params={"burst_s": rng.uniform(0.15, 0.5), "gap_s": rng.uniform(0.3, 1.0)})]
    rng.shuffle(phases)
    with running_server(tmp_path_factory.mktemp("attribution-probe")) as srv:
        create_user(srv.db_url, EMAIL, PASSWORD)
        s = srv.create_session(client_code="C-PROBE", clinician=EMAIL)
        asyncio.run(_call(srv, s["tokens"], phases, rng, probes=True))
        with httpx.Client(timeout=60) as c:
            login(c, srv.base, EMAIL, PASSWORD)
            yield phases, c.get(f"{srv.base}/reports/sessions/{s['id']}.json").json()


def test_probe_names_the_clients_uplink(result: tuple[list[Phase], dict[str, Any]]) -> None:
    phases, report = result
    lines = []
    for ph in phases:
        a, b = (ph.start - 2) * 1000, (ph.end + 4) * 1000
        evs = [e for e in report["events"] if e["start_ms"] < b and e["end_ms"] > a]
        lines.append(f"{ph.name} {ph.params}: " + "; ".join(
            f"{e['kind']} ({e['role']}) -> {e['attribution']['verdict']} "
            f"{[(x['figure'], x['reported_by'], x['value']) for x in e['attribution']['evidence']]}" for e in evs))
    print("\n".join(lines))
    for ph in phases:
        a, b = (ph.start - 2) * 1000, (ph.end + 4) * 1000
        evs = [e for e in report["events"] if e["start_ms"] < b and e["end_ms"] > a]
        for e in evs:
            assert "clinician" not in {leg["role"] for leg in e["attribution"]["legs"]}, e
        media = [e for e in evs if e["direction"] == "in"]
        named = [e for e in media if e["attribution"]["legs"] == [{"role": "client", "direction": "up"}]]
        assert named, lines
        # The clean direction (clinician -> client) shows nothing while the uplink suffers.
        assert not [e for e in media if e["role"] == "client"], lines
        for e in named:
            ev = {x["figure"]: x for x in e["attribution"]["evidence"]}
            assert ev["probe_up_loss"]["reported_by"] == "sidecar" and ev["probe_up_loss"]["value"] >= 0.01, e
            assert ev["probe_down_loss"]["value"] < 0.01, e  # the clinician's download was clean
    texts = [i["text"] for i in report["incidents"]]
    assert any(t.startswith("The client's connection (sending)") for t in texts), texts
