"""The web pages in real Chromium (Playwright) against ``soapd web`` serving a daemon-made state.

Screenshots of every page go to ``$SOAPD_ARTEFACTS/screenshots`` (default: the test's
temporary folder). The last test adds a frame with the daemon while the pages are
served, so it runs last in this module.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest

from soapd.store.readonly import ReadOnlyStore
from soapd.testing.browser import WebServer

from .conftest import WEB_TOKEN, XSS, Site

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(300)]

PLOT = """() => {
  const gd = document.getElementById('lightcurve');
  return {
    traces: gd.data.map(t => ({
      kind: t.meta.kind, band: t.meta.band, x: t.x, y: t.y, text: t.text,
      symbol: t.marker.symbol, visible: t.visible,
    })),
    xaxis: gd.layout.xaxis.type,
    yreversed: gd._fullLayout.yaxis.range[0] > gd._fullLayout.yaxis.range[1],
    drawn: gd.querySelectorAll('.scatterlayer .point').length,
  };
}"""


def _api(site: Site, path: str) -> Any:
    with urllib.request.urlopen(site.web.url + path, timeout=30) as r:
        return json.loads(r.read())


def _plot(page: Any, site: Site, name: str) -> dict[str, Any]:
    page.goto(f"{site.web.url}/targets/{quote(name, safe='')}")
    page.wait_for_selector("#lightcurve[data-state=ready]", timeout=30_000)
    return page.evaluate(PLOT)


def _kinds(info: dict[str, Any], *, stacked: bool = False) -> dict[str, int]:
    """Points drawn per kind: single frames' ("detection", "limit"), or with ``stacked``
    the stacked epochs' ("stacked detection", "stacked limit")."""
    out: dict[str, int] = {}
    for t in info["traces"]:
        if t["visible"] is not False and t["kind"].startswith("stacked") == stacked:
            out[t["kind"]] = out.get(t["kind"], 0) + len(t["x"])
    return out


def _stored_stacks(site: Site, name: str) -> dict[str, int]:
    """The stacked epochs the store holds for ``name``, counted like :func:`_kinds`."""
    out: dict[str, int] = {}
    with ReadOnlyStore(site.state_dir / "soapd.db") as store:
        for s in store.stacked(name):
            kind = "stacked detection" if s.is_detection else "stacked limit"
            out[kind] = out.get(kind, 0) + 1
    return out


def test_status_page_shows_the_stored_counts_and_refreshes(page: Any, site: Site) -> None:
    page.goto(site.web.url + "/")
    shown = {
        cell.get_attribute("data-state"): int(cell.inner_text())
        for cell in page.query_selector_all("#backlog td[data-state]")
    }
    with ReadOnlyStore(site.state_dir / "soapd.db") as store:
        backlog = store.backlog()
        alerts = store.alert_counts()
    assert shown == backlog
    assert (shown["processed"], shown["failed"], shown["rejected"]) == (5, 1, 1)
    alerts_shown = {
        cell.get_attribute("data-alerts"): int(cell.inner_text())
        for cell in page.query_selector_all("#alert-counts td[data-alerts]")
    }
    assert alerts_shown == alerts
    assert alerts["sent"] >= 2  # two new detections at least
    assert page.inner_text("#daemon-state") == "not running"  # --until-idle has exited
    failed = page.query_selector_all("#failed-frames tbody tr")
    assert len(failed) == 1
    assert str(site.demo.obs_id * 100 + 99) in failed[0].inner_text()
    rejected = page.inner_text("#rejected-frames tbody")
    assert "inbox" in rejected
    assert "constant" in rejected
    notifiers = page.inner_text("#notifiers")
    assert f"file:{site.state_dir / 'alerts'}" in notifiers
    first = page.inner_text("#updated")
    page.wait_for_function(
        "t => document.getElementById('updated').textContent !== t", arg=first, timeout=15_000
    )
    assert page.inner_text("#updated").startswith("updated ")
    assert page.query_selector("#backlog") is not None  # the refreshed page is complete
    page.screenshot(path=str(site.artefacts / "status.png"), full_page=True)


def test_targets_page_lists_every_target_and_sorts(page: Any, site: Site) -> None:
    page.goto(site.web.url + "/targets")
    names = [a.inner_text() for a in page.query_selector_all("#targets a.target-link")]
    assert sorted(names) == sorted(["DEMO-FADER", "DEMO-RISER", XSS])
    rows = {
        r.query_selector("a.target-link").inner_text(): r
        for r in page.query_selector_all("#targets tbody tr")
    }
    assert rows["DEMO-FADER"].query_selector(".badge").inner_text() == "detected"
    assert rows["DEMO-FADER"].query_selector(".n-points").inner_text() == "5"
    page.click("#targets th:nth-child(1)")
    first = [a.inner_text() for a in page.query_selector_all("#targets a.target-link")]
    page.click("#targets th:nth-child(1)")
    second = [a.inner_text() for a in page.query_selector_all("#targets a.target-link")]
    assert first == sorted(names, key=str.lower)
    assert second == first[::-1]
    page.screenshot(path=str(site.artefacts / "targets.png"), full_page=True)


def test_plot_has_the_points_and_limit_arrows_and_hides_limits(page: Any, site: Site) -> None:
    lc = _api(site, "/api/targets/DEMO-RISER/lightcurve")
    assert (lc["n_detections"], lc["n_limits"]) == (2, 3)
    info = _plot(page, site, "DEMO-RISER")
    assert _kinds(info) == {"detection": 2, "limit": 3}
    stacks = _stored_stacks(site, "DEMO-RISER")
    assert _kinds(info, stacked=True) == stacks
    assert info["drawn"] == 5 + lc["n_stacks"]
    assert info["yreversed"]
    limits = [t for t in info["traces"] if t["kind"] == "limit"]
    assert {t["symbol"] for t in limits} == {"arrow-bar-down"}
    pts = lc["points"]
    frame_rows = [i for i, kind in enumerate(pts["row_type"]) if kind == "frame"]
    assert sorted(y for t in limits for y in t["y"]) == sorted(
        pts["lim_mag"][i] for i in frame_rows if not pts["is_detection"][i]
    )
    assert page.is_disabled("#time-log")  # no trigger time: no log t - T0
    page.screenshot(path=str(site.artefacts / "target-limits.png"), full_page=True)
    page.uncheck("#show-limits")
    page.wait_for_function(
        "n => document.getElementById('lightcurve').querySelectorAll('.scatterlayer .point')"
        ".length === n",
        arg=2 + lc["n_stack_detections"],
    )
    assert _kinds(page.evaluate(PLOT)) == {"detection": 2}
    assert sum(_kinds(page.evaluate(PLOT), stacked=True).values()) == lc["n_stack_detections"]
    page.check("input[name=units][value=flux]")
    page.wait_for_selector("#lightcurve[data-units=flux][data-state=ready]")
    flux = page.evaluate(PLOT)
    assert not flux["yreversed"]
    assert sorted(y for t in flux["traces"] if t["kind"] == "detection" for y in t["y"]) == sorted(
        pts["flux_ujy"][i] for i in frame_rows if pts["is_detection"][i]
    )


def test_log_time_switch(page: Any, site: Site) -> None:
    lc = _api(site, "/api/targets/DEMO-FADER/lightcurve")
    info = _plot(page, site, "DEMO-FADER")
    assert _kinds(info) == {"detection": 5}
    assert _kinds(info, stacked=True) == _stored_stacks(site, "DEMO-FADER")
    assert info["xaxis"] == "linear"
    page.check("#time-log")
    page.wait_for_selector("#lightcurve[data-time=log][data-state=ready]")
    info = page.evaluate(PLOT)
    assert info["xaxis"] == "log"
    xs = sorted(x for t in info["traces"] for x in t["x"])
    assert xs == pytest.approx(sorted(lc["points"]["t_since_trigger_h"]))
    assert all(x > 0 for x in xs)
    assert info["drawn"] == 5 + lc["n_stacks"]
    assert "log" in page.text_content("#lightcurve .xtitle")
    page.screenshot(path=str(site.artefacts / "target.png"), full_page=True)


def test_copy_button_copies_the_circular(page: Any, site: Site) -> None:
    expected = _api(site, "/api/targets/DEMO-FADER/gcn")["text"]
    page.goto(site.web.url + "/targets/DEMO-FADER")
    page.wait_for_selector("#gcn-draft[data-state=ready]")
    assert page.inner_text("#gcn-draft").strip() == expected.strip()
    page.click("#copy-gcn")
    page.wait_for_function("() => document.getElementById('copy-status').textContent === 'copied'")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == expected
    assert copied.startswith("SUBJECT: DEMO-FADER")


def test_xss_target_name_renders_as_text(page: Any, site: Site) -> None:
    page.goto(site.web.url + "/targets")
    link = page.query_selector(f"a.target-link:text-is('{XSS}')")
    assert link is not None
    link.click()
    page.wait_for_selector("#lightcurve[data-state=ready]")
    assert page.inner_text("#target-name") == XSS
    assert page.evaluate("() => document.querySelectorAll('script:not([src])').length") == 0
    assert page.evaluate("() => document.title").startswith(XSS)
    # The page fixture fails the test if an alert() dialog or a script error appeared.


def test_frame_page_and_debug_figure(page: Any, site: Site) -> None:
    page.goto(site.web.url + "/targets/DEMO-FADER")
    page.click("#points tbody tr:first-child td:last-child a")
    page.wait_for_selector("#frame-summary")
    assert page.inner_text("#frame-state") == "processed"
    assert page.inner_text("#fwhm").endswith(" px")
    assert "apass" in page.inner_text("#cal-catalog")
    assert "RA 187." in page.inner_text("#footprint")
    page.click("#show-debug")
    page.wait_for_function(
        "() => { const i = document.getElementById('debug-figure');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=120_000,
    )
    page.screenshot(path=str(site.artefacts / "frame.png"), full_page=True)


def test_token_protected_instance_refuses_requests_without_the_token(
    page: Any, site: Site, page_problems: list[str]
) -> None:
    url = site.token_web.url
    response = page.goto(url + "/")
    assert response.status == 401
    assert "needs its access token" in page.inner_text("body")
    page.screenshot(path=str(site.artefacts / "token-refused.png"))
    # The refused page and its favicon are the expected console errors; nothing else.
    assert page_problems
    assert all("401 (Unauthorized)" in p for p in page_problems), page_problems
    page_problems.clear()
    for path in ("/api/status", "/static/vendor/plotly-gl2d.min.js", "/targets/DEMO-FADER"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path, timeout=30)
        assert err.value.code == 401
        err.value.close()  # an HTTPError holds the open response
    response = page.goto(f"{url}/targets/DEMO-FADER?token={WEB_TOKEN}")
    assert response.status == 200
    assert page.url == url + "/targets/DEMO-FADER"  # the token left the address bar
    page.wait_for_selector("#lightcurve[data-state=ready]")
    request = urllib.request.Request(url + "/api/status")
    request.add_header("Authorization", f"Bearer {WEB_TOKEN}")
    with urllib.request.urlopen(request, timeout=30) as r:
        assert json.loads(r.read())["backlog"]["processed"] >= 5
    site.token_web.stop()
    log = site.token_web.log_path.read_text()
    assert "GET /targets/DEMO-FADER 303" in log
    assert WEB_TOKEN not in log


def test_stacked_epochs_have_their_own_markers_and_hover_text(page: Any, site: Site) -> None:
    with ReadOnlyStore(site.state_dir / "soapd.db") as store:
        (stack,) = store.stacked("DEMO-RISER")  # one fixed time bin holds the 5 frames
    assert len(stack.members) == 5
    lc = _api(site, "/api/targets/DEMO-RISER/lightcurve")
    assert lc["points"]["row_type"].count("stack") == lc["n_stacks"] == 1
    info = _plot(page, site, "DEMO-RISER")
    (trace,) = [t for t in info["traces"] if t["kind"].startswith("stacked")]
    assert trace["kind"] == "stacked detection"  # the riser's stack detects it
    assert trace["symbol"] == "square-open"
    assert {t["symbol"] for t in info["traces"] if t is not trace} <= {"circle", "arrow-bar-down"}
    assert len(trace["x"]) == 1
    assert trace["y"] == [pytest.approx(stack.mag, abs=1e-4)]
    # Hover the drawn stack marker: Plotly's label says N x S, the member frames, the limit.
    marker = (
        page.locator("#lightcurve .scatterlayer .trace")
        .nth(info["traces"].index(trace))
        .locator(".point")
    )
    assert marker.count() == 1
    box = marker.bounding_box()
    assert box is not None
    # Plotly's drag layer takes the pointer events: move the mouse there, as a user does.
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    label = page.locator("#lightcurve .hoverlayer .hovertext")
    label.wait_for(timeout=10_000)
    text = label.text_content() or ""  # SVG: one tspan per line
    assert "stacked epoch" in text
    assert "5 x 30 s (150 s in all)" in text
    assert "member frames: " + ", ".join(str(f) for f in stack.members) in text
    assert f"limit {stack.lim_mag:.2f} mag (5σ)" in text
    page.screenshot(path=str(site.artefacts / "target-stacks.png"), full_page=True)
    # The table lists the stack with links to its frames; the checkbox hides the markers.
    row = page.locator("#points tr.stack")
    assert row.count() == 1
    assert "5 x 30" in row.inner_text()
    assert row.locator("a").count() == 5
    before = info["drawn"]
    page.uncheck("#show-stacks")
    page.wait_for_function(
        "n => document.getElementById('lightcurve').querySelectorAll('.scatterlayer .point')"
        ".length === n",
        arg=before - 1,
    )
    assert _kinds(page.evaluate(PLOT), stacked=True) == {}


def test_circular_block_shows_the_stacked_circular_and_its_gcn_link(page: Any, site: Site) -> None:
    from urllib.parse import parse_qs, urlsplit

    from soapd.alerts.circular import draft_for_target
    from soapd.config import load_config

    with ReadOnlyStore(site.state_dir / "soapd.db") as store:
        draft = draft_for_target(store, "DEMO-FADER", config=load_config(site.config).circular)
    circular = draft.circular
    assert draft.stacked
    page.goto(site.web.url + "/targets/DEMO-FADER")
    page.wait_for_selector("#gcn-draft[data-state=ready]")
    shown = page.inner_text("#gcn-draft")
    assert shown.strip() == circular.text.strip()
    assert page.get_attribute("#gcn-draft", "data-stacked") == "yes"
    assert "Stacking only images that increase the limiting magnitude yields:" in shown
    assert shown.startswith("SUBJECT: DEMO-FADER: Skynet/Prompt5 optical detection")
    rows = [line for line in shown.splitlines() if " 1 x 30 " in line]
    assert len(rows) == len(circular.rows) == 5  # one row per stacked epoch
    link = page.locator("#gcn-submit")
    assert link.is_visible()
    assert link.get_attribute("target") == "_blank"
    assert "noopener" in (link.get_attribute("rel") or "")
    href = link.get_attribute("href") or ""
    parts = urlsplit(href)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "gcn.nasa.gov", "/circulars/new")
    assert parse_qs(parts.query, strict_parsing=True) == {
        "subject": [circular.subject],
        "body": [circular.body],
        "format": ["text/plain"],
    }
    assert href == circular.url
    # DEMO-FADER is no GCN event name: the page says what GCN would do with it.
    warnings = page.locator("#gcn-warnings")
    assert warnings.is_visible()
    assert "matches no GCN event name pattern" in warnings.inner_text()
    page.locator("#gcn-section").screenshot(path=str(site.artefacts / "target-circular.png"))


#: More detections than lightcurve.js's GL_MIN_POINTS (2,000): drawn with WebGL.
LONG_POINTS = 2_100


def _long_lightcurve_state(root: Path) -> Path:
    """A state with one target of ``LONG_POINTS`` detections; return its config file."""
    from soapd.models import Target
    from soapd.store import Store
    from soapd.testing.lightcurves import register_frame, target_result

    state = root / "state"
    state.mkdir()
    config = root / "soapd.toml"
    config.write_text(f'[paths]\nstate_dir = "{state}"\n', encoding="utf-8")
    start = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    mags = 16.0 + 0.5 * np.sin(np.arange(LONG_POINTS) / 50.0)
    with Store(state / "soapd.db") as store:
        store.upsert_target(Target(name="LONG", ra_deg=150.0, dec_deg=-30.0))
        with store.db.atomic():
            for i, mag in enumerate(mags):
                when = start + timedelta(seconds=90 * i)
                fid = register_frame(store, f"long{i}.fits", mid_time_utc=when)
                store.start_attempt(fid)
                result = target_result({"LONG": float(mag)}, mid_time_utc=when)
                store.save_result(fid, result, config_hash="h", soapd_version="t", table_path=None)
    return config


def test_a_long_lightcurve_is_drawn_with_webgl_every_point(
    browser: Any, site: Site, tmp_path: Path
) -> None:
    """The vendored Plotly bundle has scattergl; 2,100 detections are drawn with it, none dropped."""
    config = _long_lightcurve_state(tmp_path)
    with WebServer(config, tmp_path / "web.log", env={"SOAPD_WEB_TOKEN": ""}) as web:
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        try:
            page.goto(f"{web.url}/targets/LONG")
            page.wait_for_selector("#lightcurve[data-state=ready]", timeout=60_000)
            got = page.evaluate("""() => {
              const gd = document.getElementById('lightcurve');
              const canvas = document.createElement('canvas');
              return {
                registered: Object.keys(Plotly.PlotSchema.get().traces),
                webgl: !!canvas.getContext('webgl'),
                renderer: gd.getAttribute('data-renderer'),
                detections: gd.data.filter(t => t.meta.kind === 'detection')
                  .map(t => ({type: t.type, n: t.x.length})),
              };
            }""")
            page.screenshot(path=str(site.artefacts / "target-webgl.png"), full_page=False)
        finally:
            page.close()
    assert problems == []
    assert {"scatter", "scattergl"} <= set(got["registered"])
    assert sum(t["n"] for t in got["detections"]) == LONG_POINTS
    expected = "scattergl" if got["webgl"] else "scatter"
    assert [t["type"] for t in got["detections"]] == [expected], got
    assert ("webgl" in got["renderer"]) == got["webgl"], got


def test_new_point_appears_after_refresh_while_the_daemon_adds_a_frame(
    page: Any, site: Site
) -> None:
    info = _plot(page, site, "DEMO-RISER")
    assert _kinds(info) == {"detection": 2, "limit": 3}
    assert _kinds(info, stacked=True) == _stored_stacks(site, "DEMO-RISER")
    assert site.fake.release_next() is not None
    proc = site.start_daemon()
    codes: list[int] = []
    try:
        while proc.poll() is None:
            with urllib.request.urlopen(site.web.url + "/api/status", timeout=30) as r:
                codes.append(r.status)
            page.reload()
            page.wait_for_selector("#lightcurve[data-state=ready]", timeout=30_000)
            time.sleep(0.2)
    finally:
        _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    assert codes
    assert set(codes) == {200}
    page.reload()
    page.wait_for_selector("#lightcurve[data-state=ready]")
    after = page.evaluate(PLOT)
    assert _kinds(after) == {"detection": 3, "limit": 3}
    stacks = _stored_stacks(site, "DEMO-RISER")
    assert _kinds(after, stacked=True) == stacks
    assert after["drawn"] == 6 + sum(stacks.values())
    assert page.inner_text("#n-points") == "6"
    page.goto(site.web.url + "/")
    assert page.inner_text("#backlog td[data-state=processed]") == "6"
