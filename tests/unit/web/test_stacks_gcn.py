"""The web app with stacked epochs (issue 12): lightcurve rows, the target page, the circular."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from starlette.testclient import TestClient

from soapd.alerts.circular import GCN_NEW_CIRCULAR_URL, draft_for_target
from soapd.cli import main
from soapd.config import Config
from soapd.models import StackRecord
from soapd.store import Store
from soapd.testing.web_state import GRB, XSS, add_stacks
from soapd.web import create_app

GRB_Q = quote(GRB, safe="")


@pytest.fixture(name="stacks")
def fixture_stacks(web_config: Config) -> list[StackRecord]:
    """The two stacked epochs of :func:`add_stacks`, stored in the web state."""
    with Store(web_config.paths.db_path) as store:
        add_stacks(store)
        return store.stacked(GRB)


@pytest.fixture(name="sclient")
def fixture_sclient(web_config: Config, stacks: list[StackRecord]) -> Iterator[TestClient]:
    """A TestClient of the app on the state with stacks."""
    with TestClient(create_app(web_config)) as client:
        yield client


def _json(response) -> dict:
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))


def test_lightcurve_api_gives_stack_rows_after_frame_rows(
    sclient: TestClient, stacks: list[StackRecord]
) -> None:
    lc = _json(sclient.get(f"/api/targets/{GRB_Q}/lightcurve"))
    assert (lc["n_points"], lc["n_detections"], lc["n_limits"]) == (4, 3, 1)
    assert (lc["n_stacks"], lc["n_stack_detections"], lc["n_stack_limits"]) == (2, 1, 1)
    assert lc["n_rows"] == 6
    p = lc["points"]
    assert {len(v) for v in p.values()} == {6}
    assert p["row_type"] == ["frame"] * 4 + ["stack"] * 2
    assert p["stacked"] == [False] * 4 + [True] * 2
    assert p["frame_id"][4:] == [None, None]
    assert p["stack_id"][4:] == [s.stack_id for s in stacks]
    assert p["member_frame_ids"] == [[1], [2], [3], [4], [1, 2], [3]]
    assert p["n_frames"] == [1, 1, 1, 1, 2, 1]
    assert p["exptime_s"][4:] == [60.0, 60.0]
    assert p["total_exptime_s"][4:] == [120.0, 60.0]
    assert p["excluded"][5] == {"zero point 1.5 mag below the median (clouds)": [4]}
    assert p["excluded"][:5] == [{}] * 5
    assert (p["is_detection"][4], p["mag"][4], p["mag_err"][4]) == (True, 16.21, 0.02)
    assert (p["is_detection"][5], p["mag"][5], p["lim_mag"][5]) == (False, None, 20.05)
    assert p["lim_flux_ujy"][5] > 0
    # Stack mid-times are weighted means: 03:05 and 03:20 UTC, trigger 02:50.
    assert p["t_since_trigger_h"][4:] == pytest.approx([0.25, 0.5], abs=1e-5)
    assert p["flag_words"][5][0].startswith("UPPER_LIMIT: ")
    assert lc["units"]["total_exptime_s"] == "s"
    no_stacks = _json(sclient.get(f"/api/targets/{GRB_Q}/lightcurve?stacks=0"))
    assert (no_stacks["n_rows"], no_stacks["n_stacks"]) == (4, 0)
    since = _json(sclient.get(f"/api/targets/{GRB_Q}/lightcurve?since=2026-11-24T03:15:00Z"))
    assert since["points"]["row_type"] == ["frame", "frame", "stack"]
    assert _json(sclient.get(f"/api/targets/{GRB_Q}/lightcurve?band=V"))["n_rows"] == 0


def test_target_page_lists_stack_rows_with_their_frames(sclient: TestClient) -> None:
    html = sclient.get(f"/targets/{GRB_Q}").text
    assert '<span id="n-stacks">2</span> stacked epochs (1 detections, 1 limits)' in html
    assert html.count('<tr class="stack stack-detection">') == 1
    assert html.count('<tr class="stack stack-limit">') == 1
    assert html.count('<tr class="detection">') == 3  # the frames, as before
    assert "<td>2 x 60</td>" in html
    assert 'stack of</span> <a href="/frames/1">1</a>, <a href="/frames/2">2</a></td>' in html
    assert 'id="show-stacks" checked' in html
    # Newest first: the 03:30 frame, then the 03:20 stack, then its frame 3 (03:20).
    first_rows = html.split("<tbody>")[2].split("</tr>")[:3]
    assert ["stack" in r for r in first_rows] == [False, True, False]
    plain = sclient.get(f"/targets/{quote(XSS, safe='')}").text
    assert 'id="show-stacks" disabled' in plain


def test_gcn_endpoint_is_the_cli_circular_with_its_submission_link(
    sclient: TestClient, web_config: Config, tmp_path: Path
) -> None:
    draft = _json(sclient.get(f"/api/targets/{GRB_Q}/gcn"))
    with Store(web_config.paths.db_path) as store:
        expected = draft_for_target(store, GRB, config=web_config.circular)
    assert draft["text"] == expected.circular.text
    assert draft["subject"] == "GRB 261124A: Skynet/PROMPT-5 optical detection"
    assert draft["stacked"] is True
    assert "Stacking only images that increase the limiting magnitude yields:" in draft["text"]
    assert "2 x 60" in draft["text"]
    assert "> 20.1" in draft["text"]
    assert draft["n_rows"] == 2
    assert draft["warnings"] == []
    sidecar = json.loads(json.dumps(expected.sidecar))
    for doc in (sidecar, draft["json"]):
        doc.pop("alert_datetime")  # when the document was made
    assert draft["json"] == sidecar
    link = urlsplit(draft["submission_url"])
    assert f"{link.scheme}://{link.netloc}{link.path}" == GCN_NEW_CIRCULAR_URL
    query = parse_qs(link.query, strict_parsing=True)
    assert query == {
        "subject": [draft["subject"]],
        "body": [draft["body"]],
        "format": ["text/plain"],
    }
    # The CLI writes the same text and link.
    cfg_file = tmp_path / "cli.toml"
    cfg_file.write_text(
        f'[paths]\nstate_dir = "{web_config.paths.state_dir}"\n'
        f'cache_dir = "{web_config.paths.cache_dir}"\n'
    )
    out = tmp_path / "X.gcn"
    main(["lightcurve", GRB, "--format", "gcn", "--out", str(out), "--config", str(cfg_file)])
    assert out.read_text() == draft["text"]
    assert (tmp_path / "X.gcn.url").read_text().strip() == draft["submission_url"]
    frames = _json(sclient.get(f"/api/targets/{GRB_Q}/gcn?frames=1"))
    assert frames["stacked"] is False
    assert frames["n_rows"] == 4  # one row per frame


def test_gcn_endpoint_without_stacks_and_without_anything(client: TestClient) -> None:
    draft = _json(client.get(f"/api/targets/{GRB_Q}/gcn"))
    assert draft["stacked"] is False  # no stack stored: frames combined per epoch
    assert "Combining, per epoch, the forced photometry" in draft["text"]
    assert draft["submission_url"].startswith(GCN_NEW_CIRCULAR_URL + "?")
    xss = _json(client.get(f"/api/targets/{quote(XSS, safe='')}/gcn"))
    assert xss["subject"].startswith(XSS)
    assert any("matches no GCN event name pattern" in w for w in xss["warnings"])
    r = client.get("/api/targets/NO-DATA/gcn")
    assert r.status_code == 409
    assert r.json() == {
        "error": "NO-DATA: nothing to report: no epochs are stored yet",
        "status": 409,
    }
