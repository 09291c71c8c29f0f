"""FakeSkynet on its own: the API surface it imitates, its switches and its bounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from soapd.testing.fake_skynet import API_PREFIX, HTML_PAGE, NOT_FITS_BYTES, FakeSkynet

TOKEN = "fake-test-token-0123456789abcdef"
T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@pytest.fixture(name="fake")
def fixture_fake() -> Iterator[FakeSkynet]:
    """A running fake with two observations: 5 (three exposures) and 6 (one)."""
    with FakeSkynet(token=TOKEN, seed=1, max_requests=500) as fake:
        fake.add_observation(5, "GRB field")
        for i in range(3):
            fake.add_exposure(
                5, b"DATA%d" % i, center_time_utc=T0 + timedelta(minutes=i), exp_id=100 + i
            )
        fake.add_exposure(
            6, b"other", center_time_utc=T0, exp_id=200, telescope="Prompt6", filter_name="rprime"
        )
        yield fake


@pytest.fixture(name="http")
def fixture_http(fake: FakeSkynet) -> Iterator[httpx.Client]:
    """A plain httpx client on the fake, sending the right token."""
    with httpx.Client(
        base_url=fake.url, headers={"Authentication-Token": TOKEN}, timeout=5.0
    ) as client:
        yield client


def test_fake_url_is_loopback_with_api_prefix(fake: FakeSkynet) -> None:
    assert fake.url.startswith("http://127.0.0.1:")
    assert fake.url.endswith(API_PREFIX)


def test_fake_exps_default_include_is_id_only(fake: FakeSkynet, http: httpx.Client) -> None:
    fake.release_all()
    assert http.get("/exps", params={"obs": "5"}).json() == [{"id": 100}, {"id": 101}, {"id": 102}]


def test_fake_exps_include_star_and_list(fake: FakeSkynet, http: httpx.Client) -> None:
    fake.release_all()
    full = http.get("/exps", params={"obs": "5", "include": "*"}).json()
    assert full[0]["centerTime"] == "2026-11-24T03:00:00"
    assert full[0]["timeTaken"] == "2026-11-24T02:59:30"
    assert full[0]["state"] == "archived"
    some = http.get(
        "/exps", params={"obs": "5", "include": "centerTime,gain", "exclude": "gain"}
    ).json()
    assert set(some[0]) == {"id", "centerTime"}


def test_fake_exps_filters_state_obs_name_scope_and_sorting(
    fake: FakeSkynet, http: httpx.Client
) -> None:
    fake.release_next()
    assert http.get("/exps", params={"obs": "5", "state": "archived"}).json() == [{"id": 100}]
    both = http.get("/exps", params={"obs": "GRB field", "state": "completed,archived"}).json()
    assert [r["id"] for r in both] == [100, 101, 102]
    desc = http.get("/exps", params={"sort_by": "-id", "state": "completed,archived"}).json()
    assert [r["id"] for r in desc] == [200, 102, 101, 100]
    assert http.get("/exps", params={"scope": "Prompt6"}).json() == [{"id": 200}]


def test_fake_exps_paging_offset_limit(fake: FakeSkynet, http: httpx.Client) -> None:
    pages = [
        [r["id"] for r in http.get("/exps", params={"offset": str(o), "limit": "2"}).json()]
        for o in (0, 2, 4)
    ]
    assert pages == [[100, 101], [102, 200], []]


def test_fake_exps_after_before_compare_start_time(fake: FakeSkynet, http: httpx.Client) -> None:
    got = http.get("/exps", params={"obs": "5", "after": "2026-11-24T03:00:00"}).json()
    assert [r["id"] for r in got] == [101, 102]
    got = http.get("/exps", params={"obs": "5", "before": "2026-11-24T03:00:00"}).json()
    assert [r["id"] for r in got] == [100]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/exps", {"sortBy": "id"}),
        ("/exps", {"wcsPresent": "1"}),
        ("/download/fits", {"image": "r100", "reduceQuiet": "1"}),
        ("/exps", {"limit": "-1"}),
        ("/exps", {"after": "noon"}),
    ],
)
def test_fake_refuses_unknown_or_bad_params(
    http: httpx.Client, path: str, params: dict[str, str]
) -> None:
    response = http.get(path, params=params)
    assert response.status_code == 400
    assert response.headers["web2py_error"].endswith("BadRequestError")


def test_fake_obs_by_id_and_name_and_404(fake: FakeSkynet, http: httpx.Client) -> None:
    obs = http.get("/obs/5").json()
    assert obs["name"] == "GRB field"
    assert [e["id"] for e in obs["exps"]] == [100, 101, 102]
    assert http.get("/obs/GRB field").json()["id"] == 5
    assert http.get("/obs/5", params={"include": "id,name"}).json() == {
        "id": 5,
        "name": "GRB field",
    }
    missing = http.get("/obs/999")
    assert missing.status_code == 404
    assert missing.headers["web2py_error"].endswith("ResourceNotFoundError")


def test_fake_download_only_after_release(fake: FakeSkynet, http: httpx.Client) -> None:
    assert http.get("/download/fits", params={"image": "r100"}).status_code == 404
    assert fake.release_next() == 100
    response = http.get("/download/fits/", params={"image": "r100", "reducequiet": "1"})
    assert response.status_code == 200
    assert response.content == b"DATA0"
    assert response.headers["Content-Disposition"] == 'attachment; filename="fake_100.fits"'
    assert http.get("/download/fits", params={"image": "x100"}).status_code == 404


def test_fake_release_order_and_pending(fake: FakeSkynet) -> None:
    assert fake.pending == 4
    assert [fake.release_next() for _ in range(5)] == [100, 101, 102, 200, None]
    assert fake.pending == 0
    assert fake.archived_ids() == [100, 101, 102, 200]


def test_fake_release_timer_releases_all_and_stops(fake: FakeSkynet) -> None:
    fake.start_releasing(0.01)
    deadline = time.monotonic() + 5
    while fake.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.pending == 0


def test_fake_auth_missing_bad_and_rotated(fake: FakeSkynet, http: httpx.Client) -> None:
    with httpx.Client(base_url=fake.url, timeout=5.0) as anonymous:
        assert anonymous.get("/exps").status_code == 401
    assert http.get("/exps").status_code == 200
    fake.rotate_token("new-token")
    assert http.get("/exps").status_code == 401
    assert [r.auth for r in fake.requests] == ["missing", "ok", "bad"]
    assert TOKEN not in repr(fake.requests)
    assert "new-token" not in repr(fake.requests)


def test_fake_fail_rate_is_seeded_and_repeatable() -> None:
    def statuses(seed: int) -> list[int]:
        with (
            FakeSkynet(token=TOKEN, seed=seed) as fake,
            httpx.Client(
                base_url=fake.url, headers={"Authentication-Token": TOKEN}, timeout=5.0
            ) as http,
        ):
            fake.set_fail_rate(0.5)
            return [http.get("/exps").status_code for _ in range(30)]

    first, second = statuses(7), statuses(7)
    assert first == second
    assert set(first) == {200, 503}


def test_fake_fail_rate_out_of_range_raises(fake: FakeSkynet) -> None:
    with pytest.raises(ValueError, match="fail rate"):
        fake.set_fail_rate(1.0)


def test_fake_truncated_download_breaks_the_connection(
    fake: FakeSkynet, http: httpx.Client
) -> None:
    fake.release_all()
    fake.truncate_next_download()
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/download/fits", params={"image": "r100"})
    assert http.get("/download/fits", params={"image": "r100"}).content == b"DATA0"


def test_fake_request_budget_bounds_a_runaway_client() -> None:
    with (
        FakeSkynet(token=TOKEN, max_requests=3) as fake,
        httpx.Client(
            base_url=fake.url, headers={"Authentication-Token": TOKEN}, timeout=5.0
        ) as http,
    ):
        codes = [http.get("/exps").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 503, 503]
        assert fake.budget_exhausted


def test_fake_stop_interrupts_slow_answer_and_joins_threads() -> None:
    fake = FakeSkynet(token=TOKEN).start()
    fake.slow_next(25.0)
    result: list[object] = []

    def call() -> None:
        try:
            with httpx.Client(
                base_url=fake.url, headers={"Authentication-Token": TOKEN}, timeout=30.0
            ) as http:
                result.append(http.get("/exps").status_code)
        except httpx.HTTPError as exc:
            result.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while not fake.requests:
        time.sleep(0.01)
    started = time.monotonic()
    fake.stop()
    caller.join(timeout=10)
    assert not caller.is_alive()
    assert time.monotonic() - started < 10  # far below the 25 s delay: stop() cut it short
    assert len(result) == 1


def test_fake_url_before_start_raises() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = FakeSkynet().url


def test_fake_not_fits_bytes_are_not_fits() -> None:
    assert not NOT_FITS_BYTES.startswith(b"SIMPLE")


def test_fake_serve_html_answers_200_with_a_page_for_a_while(
    fake: FakeSkynet, http: httpx.Client
) -> None:
    fake.release_all()
    fake.serve_html(30.0)
    page = http.get("/download/fits", params={"image": "r100"})
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.content == HTML_PAGE
    assert "Content-Disposition" not in page.headers
    fake.serve_html(0.0)  # the page is gone
    assert http.get("/download/fits", params={"image": "r100"}).content == b"DATA0"


def test_fake_drip_sends_the_whole_file_in_small_pieces(fake: FakeSkynet) -> None:
    fake.release_all()
    fake.drip_next_download(chunk_bytes=2, interval_s=0.05)
    pieces: list[bytes] = []
    with (
        httpx.Client(base_url=fake.url, headers={"Authentication-Token": TOKEN}) as http,
        http.stream("GET", "/download/fits", params={"image": "r101"}) as response,
    ):
        pieces.extend(response.iter_raw())
    assert b"".join(pieces) == b"DATA1"
    assert len(pieces) >= 2  # b"DA", b"TA", b"1" written apart (a busy reader may join two)
    with pytest.raises(ValueError, match="chunk_bytes"):
        fake.drip_next_download(chunk_bytes=0)


def test_fake_stop_interrupts_a_drip() -> None:
    fake = FakeSkynet(token=TOKEN).start()
    fake.add_exposure(5, b"x" * 100, center_time_utc=T0, exp_id=100, archived=True)
    fake.drip_next_download(chunk_bytes=1, interval_s=20.0)
    result: list[object] = []

    def call() -> None:
        try:
            with httpx.Client(
                base_url=fake.url, headers={"Authentication-Token": TOKEN}, timeout=30.0
            ) as http:
                result.append(http.get("/download/fits", params={"image": "r100"}).content)
        except httpx.HTTPError as exc:
            result.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while not fake.requests:
        time.sleep(0.01)
    fake.stop()
    caller.join(timeout=10)
    assert not caller.is_alive()
    assert len(result) == 1
    assert result[0] != b"x" * 100  # cut short


def test_fake_collide_names_sends_one_name_for_every_file(
    fake: FakeSkynet, http: httpx.Client
) -> None:
    fake.release_all()
    fake.collide_names("image.fits")
    names = {
        http.get("/download/fits", params={"image": f"r{i}"}).headers["Content-Disposition"]
        for i in (100, 101, 200)
    }
    assert names == {'attachment; filename="image.fits"'}
    fake.collide_names(None)
    got = http.get("/download/fits", params={"image": "r101"}).headers["Content-Disposition"]
    assert got == 'attachment; filename="fake_101.fits"'


def test_fake_add_record_lists_it_as_given(fake: FakeSkynet, http: httpx.Client) -> None:
    fake.release_all()
    fake.add_record({"id": 2**64, "obsId": 5, "state": "archived"})
    fake.add_record({"state": "archived", "obsId": 5})
    rows = http.get("/exps", params={"obs": "5", "include": "*"}).json()
    assert [r.get("id") for r in rows] == [100, 101, 102, 2**64, None]
    assert http.get("/exps", params={"obs": "6"}).json() == [{"id": 200}]
    assert fake.archived_ids() == [100, 101, 102, 200]
