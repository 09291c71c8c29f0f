"""The web app in-process (Starlette TestClient): pages, JSON endpoints, downloads, safety."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from soapd.cli import main
from soapd.cli.web import is_loopback
from soapd.config import Config
from soapd.flags import Flag
from soapd.output.export import read_table
from soapd.testing.web_state import GRB, XSS
from soapd.web import create_app
from soapd.web.data import flag_meanings, flag_words
from soapd.web.middleware import COOKIE_NAME, session_value


def _json(response) -> dict:
    assert response.status_code == 200, response.text
    # Strict JSON: NaN or Infinity would fail here.
    return json.loads(response.text, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))


def test_status_api_counts_frames_alerts_problems(client: TestClient) -> None:
    info = _json(client.get("/api/status"))
    assert info["backlog"] == {
        "seen": 0,
        "downloaded": 0,
        "processing": 0,
        "processed": 4,
        "rejected": 1,
        "failed": 1,
    }
    assert info["daemon"]["running"] is True  # this test process's pid, no stopped_utc
    assert info["alerts"]["counts"] == {"pending": 0, "sent": 1, "failed": 0}
    assert info["alerts"]["notifiers"]["log"] == {"delivered": 1, "pending": 0, "failed": 0}
    assert [f["last_error"] for f in info["failed_frames"]] == ["FrameUnreadable: not a FITS file"]
    rejected = info["rejected_frames"]
    assert [(f["source"], f["file"]) for f in rejected] == [("inbox", "/inbox/flat.fits")]
    assert "constant" in rejected[0]["last_error"]
    obs = info["observations"]
    assert [(o["obs_id"], o["n_frames"], o["n_processed"], o["n_bad"]) for o in obs] == [
        (77, 5, 4, 1)
    ]
    assert obs[0]["last_seen_utc"]
    assert info["pending_migrations"] == []


def test_status_page_shows_the_same_counts_and_refreshes(client: TestClient) -> None:
    html = client.get("/").text
    assert 'data-state="processed">4<' in html
    assert 'data-state="failed">1<' in html
    assert 'data-state="rejected">1<' in html
    assert 'data-alerts="sent">1<' in html
    assert "FrameUnreadable: not a FITS file" in html
    assert "the image is constant" in html
    assert 'data-refresh-s="10.0"' in html
    assert client.get("/status", follow_redirects=False).status_code == 308


def test_targets_api_gives_latest_state_per_target(client: TestClient) -> None:
    rows = {r["name"]: r for r in _json(client.get("/api/targets"))["targets"]}
    assert set(rows) == {GRB, XSS, "NO-DATA"}
    assert (rows[GRB]["state"], rows[GRB]["n_points"]) == ("detected", 4)
    assert rows[GRB]["last_mag"] == pytest.approx(17.0, abs=1e-6)
    assert rows[GRB]["since_trigger_h"] > 0
    assert (rows[XSS]["state"], rows[XSS]["last_text"]) == ("not covered", "OFF_FRAME")
    assert (rows["NO-DATA"]["state"], rows["NO-DATA"]["n_points"]) == ("no data", 0)
    assert rows[XSS]["since_trigger_h"] is None


def test_lightcurve_api_columns_limits_and_time_since_trigger(client: TestClient) -> None:
    lc = _json(client.get(f"/api/targets/{quote(GRB, safe='')}/lightcurve"))
    assert (lc["n_points"], lc["n_detections"], lc["n_limits"]) == (4, 3, 1)
    p = lc["points"]
    assert {len(v) for v in p.values()} == {4}
    assert p["is_detection"] == [True, True, False, True]
    assert p["mag"][0] == pytest.approx(16.0, abs=1e-4)
    assert p["mag"][2] is None
    assert p["lim_mag"][2] == pytest.approx(19.5)
    assert p["lim_flux_ujy"][2] > 0
    # 03:00 UTC, trigger 02:50 UTC.
    assert p["t_since_trigger_h"][0] == pytest.approx(10 / 60, abs=1e-6)
    assert p["flag_words"][2] == [f"UPPER_LIMIT: {flag_meanings()['UPPER_LIMIT']}"]
    assert lc["target"]["trigger_time_utc"].startswith("2026-11-24T02:50:00")
    assert lc["units"]["flux_ujy"] == "uJy"
    since = _json(
        client.get(f"/api/targets/{quote(GRB, safe='')}/lightcurve?since=2026-11-24T03:15:00Z")
    )
    assert since["n_points"] == 2
    assert client.get(f"/api/targets/{quote(GRB)}/lightcurve?since=soon").status_code == 400


@pytest.mark.parametrize("fmt", ["csv", "ecsv", "json", "parquet"])
def test_downloads_are_the_cli_exporters_files(
    client: TestClient, fmt: str, tmp_path: Path
) -> None:
    r = client.get(f"/api/targets/{quote(XSS, safe='')}/lightcurve.{fmt}")
    assert r.status_code == 200
    disposition = r.headers["content-disposition"]
    assert disposition == f'attachment; filename="script_alert_1_script_lightcurve.{fmt}"'
    path = tmp_path / f"lc.{fmt}"
    path.write_bytes(r.content)
    table = read_table(path)
    assert len(table) == 4
    assert list(table["is_detection"]) == [True, True, True, False]


def test_target_page_escapes_the_name_and_lists_points_alerts(client: TestClient) -> None:
    html = client.get(f"/targets/{quote(XSS, safe='')}").text
    assert "<script>alert(1)</script>" not in html
    assert '<h1 id="target-name">&lt;script&gt;alert(1)&lt;/script&gt;</h1>' in html
    assert f'data-url="/api/targets/{quote(XSS, safe="")}/lightcurve"' in html
    targets = client.get("/targets").text
    assert f'href="/targets/{quote(XSS, safe="")}"' in targets
    assert "<script>alert(1)</script>" not in targets
    grb = client.get(f"/targets/{quote(GRB, safe='')}").text
    assert "new detection in R: 16.00 mag" in grb
    assert grb.count('<tr class="limit">') == 1
    assert grb.count('<tr class="detection">') == 3
    assert 'title="UPPER_LIMIT: ' in grb


def test_target_page_table_rows_are_capped_with_a_link_to_all(
    web_config: Config,
) -> None:
    import dataclasses

    cfg = web_config.replace(web=dataclasses.replace(web_config.web, table_rows=10))
    with TestClient(create_app(cfg)) as c:
        assert c.get(f"/targets/{quote(GRB, safe='')}").text.count("<tr class=") == 4
    from soapd.web import pages

    assert pages._num(float("nan")) == "-"


def test_gcn_endpoint_text_schema_json_and_submission_link(client: TestClient) -> None:
    from urllib.parse import parse_qs, urlsplit

    from soapd.alerts.circular import validate_sidecar

    url = f"/api/targets/{quote(GRB, safe='')}/gcn"
    draft = _json(client.get(url))
    assert draft["text"].startswith(f"SUBJECT: {GRB}")
    validate_sidecar(draft["json"])  # the GCN unified schema (v7.2.1)
    link = urlsplit(draft["submission_url"])
    assert (link.scheme, link.netloc, link.path) == ("https", "gcn.nasa.gov", "/circulars/new")
    query = parse_qs(link.query)
    assert query["subject"] == [draft["subject"]]
    assert query["body"] == [draft["body"]]
    assert draft["text"] == f"SUBJECT: {draft['subject']}\n\n{draft['body']}"


def test_frame_page_and_api(client: TestClient) -> None:
    data = _json(client.get("/api/frames/1"))
    assert data["frame"]["state"] == "processed"
    assert data["frame"]["fwhm_px"] == pytest.approx(3.0)
    assert data["file_exists"] is False
    assert data["footprint"] is None
    assert {m["target_name"] for m in data["measurements"]} == {GRB, XSS}
    html = client.get("/frames/1").text
    assert 'id="fwhm">3.00 px' in html
    assert "21.995" not in html or "zero point" in html
    assert "not kept any more" in html
    assert client.get("/frames/999").status_code == 404
    assert _json(client.get("/api/frames/6"))["frame"]["source"] == "inbox"
    assert client.get("/frames/1/debug.png").status_code == 409  # no file to redraw


def test_unknown_target_is_404_in_html_and_json(client: TestClient) -> None:
    r = client.get("/targets/NOPE")
    assert r.status_code == 404
    assert "no target named &#39;NOPE&#39;" in r.text
    r = client.get("/api/targets/NOPE/lightcurve")
    assert r.status_code == 404
    assert r.json() == {"error": "no target named 'NOPE'", "status": 404}
    assert client.get("/api/targets/NOPE/lightcurve.xlsx").status_code == 404


def test_no_endpoint_writes(client: TestClient) -> None:
    for path in ("/", "/api/status", f"/api/targets/{quote(GRB)}/lightcurve", "/targets"):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert client.request(method, path).status_code == 405, (method, path)


def test_security_headers_and_local_plotly(client: TestClient) -> None:
    r = client.get(f"/targets/{quote(GRB, safe='')}")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-eval" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert '<script src="/static/vendor/plotly-gl2d.min.js" defer></script>' in r.text
    assert "http://" not in r.text.split("<main")[0]
    assert "https://" not in r.text.split("<main")[0]
    js = client.get("/static/vendor/plotly-gl2d.min.js", headers={"Accept-Encoding": "gzip"})
    assert js.status_code == 200
    assert b"plotly.js" in js.content[:200]  # httpx has decoded the gzip body
    assert js.headers["content-encoding"] == "gzip"
    again = client.get(
        "/static/vendor/plotly-gl2d.min.js", headers={"If-None-Match": js.headers["etag"]}
    )
    assert again.status_code == 304
    css = client.get("/static/soapd.css")
    assert css.status_code == 200
    assert css.headers.get("cache-control") != "no-store"
    raw = client.get("/static/vendor/plotly-gl2d.min.js", headers={"Accept-Encoding": "identity"})
    assert len(raw.content) > len(gzip.compress(raw.content[:1000]))


def test_token_is_required_on_every_request_and_never_logged(
    token_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for path in ("/", "/api/status", "/static/soapd.css", "/static/vendor/plotly-gl2d.min.js"):
        r = token_client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == 'Bearer realm="soapd"'
    assert (
        token_client.get("/api/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    ok = token_client.get("/api/status", headers={"Authorization": "Bearer sesame-7"})
    assert ok.status_code == 200
    login = token_client.get("/targets?token=sesame-7&x=1")
    assert login.status_code == 303
    assert login.headers["location"] == "/targets?x=1"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}={session_value('sesame-7')};")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "sesame-7" not in cookie
    token_client.cookies.clear()
    assert token_client.get("/targets?token=wrong").status_code == 401
    token_client.cookies.set(COOKIE_NAME, session_value("sesame-7"))
    assert token_client.get("/targets").status_code == 200
    token_client.cookies.set(COOKIE_NAME, "forged")
    assert token_client.get("/targets").status_code == 401
    # (httpx, the test's own client, logs full URLs; soapd's loggers must not.)
    soapd_lines = [r.getMessage() for r in caplog.records if r.name.startswith("soapd")]
    assert "GET /targets 303" in "\n".join(soapd_lines)
    assert not [line for line in soapd_lines if "sesame-7" in line]
    assert "sesame-7" not in repr(token_client.app.middleware_stack)


def test_missing_database_says_where_it_looked(config) -> None:
    cfg = config()
    with TestClient(create_app(cfg)) as c:
        r = c.get("/")
        assert r.status_code == 503
        assert "no soapd database at" in r.text
        r = c.get("/api/status")
        assert r.status_code == 503
        assert "no soapd database at" in r.json()["error"]
    assert not cfg.paths.db_path.exists()


def test_flag_words_cover_every_bit() -> None:
    meanings = flag_meanings()
    assert set(meanings) == {f.name for f in Flag}
    assert all(meanings.values())
    assert flag_words(int(Flag.NEAR_EDGE | Flag.UPPER_LIMIT)) == (
        f"NEAR_EDGE: {meanings['NEAR_EDGE']}",
        f"UPPER_LIMIT: {meanings['UPPER_LIMIT']}",
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("192.168.1.10", False), ("::", False),
     ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_cli_refuses_a_public_address_without_token(
    web_config: Config,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOAPD_WEB_TOKEN", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[paths]\nstate_dir = "{web_config.paths.state_dir}"\n')
    assert main(["web", "--config", str(cfg), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "needs an access token" in capsys.readouterr().err
    assert main(["web", "--config", str(cfg), "--port", "70000"]) == 2
