"""SkynetClient against httpx.MockTransport: paging, parameters, retries, downloads, secrecy."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from soapd.config import SkynetConfig, Token
from soapd.errors import (
    FrameUnreadable,
    SkynetAuthError,
    SkynetBadAnswer,
    SkynetError,
    SkynetNotFound,
    SkynetUnavailable,
)
from soapd.ingest.fitscheck import has_fits_suffix
from soapd.skynet import Exposure, ExposureSource, SkynetClient
from soapd.skynet import client as client_module
from soapd.skynet.client import AUTH_HEADER
from soapd.skynet.download import local_name, server_filename
from soapd.skynet.records import EXPOSURE_FIELDS, exposure_from_json

MakeClient = Callable[..., tuple[SkynetClient, Any]]


def _records(n: int, *, start: int = 1000) -> list[dict[str, Any]]:
    return [
        {"id": start + i, "obsId": 7, "state": "archived", "centerTime": "2025-01-12T03:04:35"}
        for i in range(n)
    ]


def _paged(records: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        limit = int(request.url.params["limit"])
        return httpx.Response(200, json=records[offset : offset + limit])

    return answer


def _exp(exp_id: int = 55) -> Exposure:
    return exposure_from_json({"id": exp_id, "obsId": 7, "state": "archived"})


def _file(data: bytes, name: str | None = '"r55.fits"', **headers: str) -> httpx.Response:
    hdrs = {"Content-Length": str(len(data)), **headers}
    if name is not None:
        hdrs["Content-Disposition"] = f"attachment; filename={name}"
    return httpx.Response(200, content=data, headers=hdrs)


# -- listing and paging -------------------------------------------------------------


@pytest.mark.parametrize(("n", "pages"), [(0, 1), (1, 1), (4, 3), (5, 3), (6, 4)])
def test_iter_archived_pages_until_short_page(make_client: MakeClient, n: int, pages: int) -> None:
    records = _records(n)
    client, rec = make_client(_paged(records), page_size=2)
    ids = [e.exp_id for e in client.iter_archived(7)]
    assert ids == [r["id"] for r in records]
    assert len(rec.requests) == pages
    assert [p["offset"] for p in rec.params] == [str(2 * i) for i in range(pages)]
    assert {p["limit"] for p in rec.params} == {"2"}


def test_iter_archived_params_are_snake_case_and_complete(make_client: MakeClient) -> None:
    client, rec = make_client(_paged(_records(1)))
    list(client.iter_archived(11920699))
    (params,) = rec.params
    assert rec.requests[0].url.path == "/2.0/exps"
    assert params["obs"] == "11920699"
    assert params["state"] == "archived"
    assert params["sort_by"] == "id"
    assert params["include"].split(",") == list(EXPOSURE_FIELDS)
    assert all(re.fullmatch(r"[a-z_]+", key) for key in params)


def test_iter_telescope_sends_scope_and_naive_utc_after(make_client: MakeClient) -> None:
    client, rec = make_client(_paged(_records(1)))
    since = datetime(2025, 1, 12, 5, 0, tzinfo=UTC).astimezone()  # any zone: sent as UTC
    list(client.iter_telescope("Prompt5", since_utc=since))
    (params,) = rec.params
    assert params["scope"] == "Prompt5"
    assert params["after"] == "2025-01-12T05:00:00"
    assert params["state"] == "archived"


def test_iter_telescope_naive_since_raises(make_client: MakeClient) -> None:
    client, _ = make_client(_paged([]))
    with pytest.raises(ValueError, match="timezone-aware"):
        list(client.iter_telescope("Prompt5", since_utc=datetime(2025, 1, 1)))


def test_iter_archived_skips_bad_and_unarchived_records(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    page = [{"id": 1, "state": "archived"}, {"id": "x"}, "junk", {"id": 2, "state": "completed"}]
    client, _ = make_client(lambda r: httpx.Response(200, json=page))
    with caplog.at_level(logging.WARNING):
        ids = [e.exp_id for e in client.iter_archived(7)]
    assert ids == [1]
    assert "without an integer id" in caplog.text
    assert "non-object" in caplog.text


def test_iter_archived_server_ignoring_offset_raises(make_client: MakeClient) -> None:
    client, rec = make_client(lambda r: httpx.Response(200, json=_records(2)), page_size=2)
    with pytest.raises(SkynetError, match="ignores 'offset'"):
        list(client.iter_archived(7))
    assert len(rec.requests) == 2


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"id": 1}'])
def test_iter_archived_not_a_json_list_raises(make_client: MakeClient, body: bytes) -> None:
    client, _ = make_client(lambda r: httpx.Response(200, content=body))
    with pytest.raises(SkynetError, match="JSON"):
        list(client.iter_archived(7))


def test_get_observation_returns_name(
    make_client: MakeClient, load_json: Callable[[str], Any]
) -> None:
    client, rec = make_client(lambda r: httpx.Response(200, json=load_json("obs.json")))
    info = client.get_observation(11920699)
    assert (info.obs_id, info.name, info.state) == (11920699, "GRB 250112A follow-up", "active")
    assert rec.requests[0].url.path == "/2.0/obs/11920699"


def test_client_satisfies_exposure_source_protocol(make_client: MakeClient) -> None:
    client, _ = make_client(_paged([]))
    assert isinstance(client, ExposureSource)


def test_client_timeouts_come_from_config(make_client: MakeClient) -> None:
    client, _ = make_client(_paged([]), connect_timeout_s=3.0, read_timeout_s=45.0)
    timeout = client._http.timeout
    assert (timeout.connect, timeout.read) == (3.0, 45.0)


# -- retries --------------------------------------------------------------------


def _sequence(*answers: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return answer


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_get_retries_on_5xx_then_succeeds(make_client: MakeClient, status: int) -> None:
    client, rec = make_client(
        _sequence(httpx.Response(status), httpx.Response(status), httpx.Response(200, json=[]))
    )
    assert list(client.iter_archived(7)) == []
    assert len(rec.requests) == 3


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
)
def test_get_retries_on_transport_error_then_succeeds(
    make_client: MakeClient, error: Exception
) -> None:
    client, rec = make_client(_sequence(error, httpx.Response(200, json=_records(1))))
    assert len(list(client.iter_archived(7))) == 1
    assert len(rec.requests) == 2


def test_get_gives_up_after_max_attempts_with_unavailable(make_client: MakeClient) -> None:
    client, rec = make_client(_sequence(httpx.Response(503, text="down")), max_attempts=4)
    with pytest.raises(SkynetUnavailable, match=r"HTTP 503.*after 4 attempt"):
        list(client.iter_archived(7))
    assert len(rec.requests) == 4


def test_transport_error_after_retries_is_unavailable(make_client: MakeClient) -> None:
    client, rec = make_client(_sequence(httpx.ConnectError("refused")), max_attempts=3)
    with pytest.raises(SkynetUnavailable, match="cannot reach Skynet"):
        list(client.iter_archived(7))
    assert len(rec.requests) == 3


def test_retry_waits_grow_exponentially(token: Token) -> None:
    waits: list[float] = []
    answer = _sequence(
        httpx.Response(503), httpx.Response(503), httpx.Response(503), httpx.Response(200, json=[])
    )
    cfg = SkynetConfig(api_url="https://skynet.test/2.0", backoff_s=0.5, max_attempts=5)
    with SkynetClient.from_config(
        cfg, token, transport=httpx.MockTransport(answer), sleep=waits.append
    ) as client:
        list(client.iter_archived(7))
    assert waits == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_is_not_retried_and_says_what_to_do(
    make_client: MakeClient, status: int
) -> None:
    client, rec = make_client(_sequence(httpx.Response(status, text="Invalid token")))
    with pytest.raises(SkynetAuthError) as info:
        list(client.iter_archived(7))
    assert len(rec.requests) == 1
    message = str(info.value)
    assert "refused the API token" in message
    assert "skynet-token" in message
    assert "SOAPD_SKYNET_TOKEN" in message


def test_not_found_is_not_retried(make_client: MakeClient) -> None:
    client, rec = make_client(
        _sequence(httpx.Response(404, text="no", headers={"web2py_error": "ResourceNotFoundError"}))
    )
    with pytest.raises(SkynetNotFound, match="ResourceNotFoundError"):
        client.get_observation(1)
    assert len(rec.requests) == 1


def test_other_4xx_is_not_retried(make_client: MakeClient) -> None:
    client, rec = make_client(_sequence(httpx.Response(400, text="bad parameter")))
    with pytest.raises(SkynetError, match="HTTP 400: bad parameter"):
        list(client.iter_archived(7))
    assert len(rec.requests) == 1


def test_set_token_uses_new_token(make_client: MakeClient) -> None:
    client, rec = make_client(_paged([]))
    client.set_token(Token("another-token-value-123"))
    list(client.iter_archived(7))
    assert rec.requests[0].headers[AUTH_HEADER] == "another-token-value-123"


# -- downloads --------------------------------------------------------------------


def test_download_streams_checks_and_renames(
    make_client: MakeClient, tmp_path: Path, fits_bytes: Callable[..., bytes]
) -> None:
    data = fits_bytes()
    client, rec = make_client(lambda r: _file(data))
    got = client.download(_exp(), tmp_path / "frames")
    assert got.path == tmp_path / "frames" / "r55.fits"
    assert got.path.read_bytes() == data
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.size_bytes == len(data)
    assert got.server_filename == "r55.fits"
    assert [p.name for p in got.path.parent.iterdir()] == ["r55.fits"]
    (params,) = rec.params
    assert params == {"image": "r55", "reducequiet": "1"}
    assert rec.requests[0].url.path == "/2.0/download/fits"


def test_download_unreduced_request_omits_reducequiet(
    make_client: MakeClient, tmp_path: Path, fits_bytes: Callable[..., bytes]
) -> None:
    data = fits_bytes(dtype=np.int16)
    client, rec = make_client(lambda r: _file(data), reduced=False)
    got = client.download(_exp(), tmp_path)
    assert rec.params == [{"image": "r55"}]
    assert got.reduction == "not_requested"


@pytest.mark.parametrize(
    ("dtype", "header", "expected"),
    [
        (np.int16, {}, "probably_unreduced"),
        (np.int16, {"FLATCORR": "done"}, "reduced"),
        (np.float32, {}, "unknown"),
        (np.float32, {"CALSTAT": "BDF"}, "reduced"),
    ],
)
def test_download_reports_reduction_signs(  # noqa: PLR0917 - fixtures and parameters
    make_client: MakeClient,
    tmp_path: Path,
    fits_bytes: Callable[..., bytes],
    caplog: pytest.LogCaptureFixture,
    dtype: Any,
    header: dict[str, str],
    expected: str,
) -> None:
    data = fits_bytes(dtype=dtype, header=header)
    client, _ = make_client(lambda r: _file(data))
    with caplog.at_level(logging.WARNING, logger="soapd.skynet.download"):
        got = client.download(_exp(), tmp_path)
    assert got.reduction == expected
    assert ("raw frame" in caplog.text) == (expected == "probably_unreduced")


def test_download_truncated_leaves_nothing_and_says_so(
    make_client: MakeClient, tmp_path: Path, fits_bytes: Callable[..., bytes]
) -> None:
    data = fits_bytes()
    headers = {
        "Content-Length": str(len(data)),
        "Content-Disposition": 'attachment; filename="r55.fits"',
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=data[:1000], headers=headers)

    client, rec = make_client(answer, max_attempts=3)
    # #15: a body truncated on every attempt is a transient fault (SkynetBadAnswer), not
    # a bad frame: the caller retries later without counting a try.
    with pytest.raises(
        SkynetBadAnswer, match=rf"truncated: received 1000 of {len(data)} bytes.*after 3 attempt"
    ):
        client.download(_exp(), tmp_path)
    assert len(rec.requests) == 3
    assert list(tmp_path.iterdir()) == []


def test_download_truncated_once_then_complete_succeeds(
    make_client: MakeClient, tmp_path: Path, fits_bytes: Callable[..., bytes]
) -> None:
    data = fits_bytes()
    short = httpx.Response(200, content=data[:100], headers={"Content-Length": str(len(data))})
    client, rec = make_client(_sequence(short, _file(data)))
    got = client.download(_exp(), tmp_path)
    assert got.path.read_bytes() == data
    assert len(rec.requests) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["r55.fits"]


def test_download_stream_error_midway_is_retried(
    make_client: MakeClient, tmp_path: Path, fits_bytes: Callable[..., bytes]
) -> None:
    data = fits_bytes()

    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield data[:500]
            raise httpx.RemoteProtocolError("peer closed connection")

    broken = httpx.Response(200, stream=Broken(), headers={"Content-Length": str(len(data))})
    client, rec = make_client(_sequence(broken, _file(data)))
    assert client.download(_exp(), tmp_path).size_bytes == len(data)
    assert len(rec.requests) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>reduction failed</html>", r"exposure 55.*HTML page instead of a FITS file"),
        (b"\x00\x01garbage" * 300, r"exposure 55.*not usable FITS.*SIMPLE"),
    ],
)
def test_download_not_fits_is_a_bad_answer_without_retry(
    make_client: MakeClient, tmp_path: Path, body: bytes, message: str
) -> None:
    client, rec = make_client(lambda r: _file(body))
    with pytest.raises(SkynetBadAnswer, match=message):
        client.download(_exp(), tmp_path)
    assert len(rec.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_download_empty_file_is_unreadable(make_client: MakeClient, tmp_path: Path) -> None:
    client, _ = make_client(lambda r: _file(b""))
    with pytest.raises(SkynetBadAnswer, match="empty file"):
        client.download(_exp(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_404_is_not_found(make_client: MakeClient, tmp_path: Path) -> None:
    client, rec = make_client(lambda r: httpx.Response(404, text="Image r55 not found"))
    with pytest.raises(SkynetNotFound, match="r55 not found"):
        client.download(_exp(), tmp_path)
    assert len(rec.requests) == 1


def test_download_without_disposition_uses_exposure_name(
    make_client: MakeClient, tmp_path: Path, fits_bytes: Callable[..., bytes]
) -> None:
    data = fits_bytes()
    client, _ = make_client(lambda r: _file(data, name=None))
    assert client.download(_exp(), tmp_path).path.name == "r55.fits"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        'attachment; filename="r55.fits"',
        'inline; filename="Prompt5_r55_V.fits.fz"',
        'attachment; filename="../../etc/passwd"',
        'attachment; filename="..\\..\\evil.fits"',
        'attachment; filename="..."',
        'attachment; filename="/"',
        "attachment; filename=plain_r55.fit",
        'attachment; filename="r56.fits"',
        'attachment; filename="obs17_r55-V.fits"',
        "attachment; filename*=UTF-8''caf%C3%A9%20r55.fits",
        'attachment; filename=".hidden.fits"',
        'attachment; filename="image.jpg"',
    ],
)
def test_download_name_is_built_from_the_exposure_id_only(
    make_client: MakeClient,
    tmp_path: Path,
    fits_bytes: Callable[..., bytes],
    header: str | None,
) -> None:
    """#15: server names are not used for files (two exposures once shared one)."""
    data = fits_bytes()
    headers = {"Content-Length": str(len(data))}
    if header is not None:
        headers["Content-Disposition"] = header
    client, _ = make_client(lambda r: httpx.Response(200, content=data, headers=headers))
    got = client.download(_exp(), tmp_path)
    assert got.path == tmp_path / "r55.fits"
    assert got.path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["r55.fits"]  # no .part left over
    if header and header.count('"') >= 2:
        assert got.server_filename == header[header.index('"') + 1 : header.rindex('"')]


# -- the token never leaks ---------------------------------------------------------


def test_token_never_in_logs_repr_or_errors(
    make_client: MakeClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    secret: str,
    fits_bytes: Callable[..., bytes],
) -> None:
    data = fits_bytes()
    script: list[httpx.Response | Exception] = [
        httpx.Response(503, text=f"upstream said {secret}"),
        httpx.ConnectError("connection to host failed"),
        httpx.Response(200, json=_records(1)),
        httpx.Response(401, text=f"token {secret} is not valid"),
        httpx.Response(500, text=f"trace: header {secret}"),
        httpx.Response(404, text=f"no exp for {secret}"),
        httpx.Response(400, text=f"bad request {secret}"),
        _file(data[:10] + b"x", name='"r55.fits"'),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers[AUTH_HEADER] == secret  # the header is sent ...
        item = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(item, Exception):
            raise item
        return item

    client, _ = make_client(answer, max_attempts=3)
    errors: list[BaseException] = []
    with contextlib.ExitStack() as stack:
        for name in (None, "httpx", "httpcore", "soapd"):
            stack.enter_context(caplog.at_level(logging.DEBUG, logger=name))
        list(client.iter_archived(7))
        for call in (
            lambda: list(client.iter_archived(7)),
            lambda: list(client.iter_archived(7)),
            lambda: client.get_observation(1),
            lambda: list(client.iter_archived(7)),
            lambda: client.download(_exp(), tmp_path),
        ):
            with pytest.raises((SkynetError, FrameUnreadable)) as info:
                call()
            errors.append(info.value)
    assert len(caplog.records) > 0
    assert any(r.name.startswith("httpx") for r in caplog.records)
    assert secret not in caplog.text
    assert all(secret not in r.getMessage() for r in caplog.records)
    for exc in errors:
        chain: BaseException | None = exc
        while chain is not None:
            assert secret not in str(chain)
            assert secret not in repr(chain.args)
            chain = chain.__cause__ or chain.__context__
    assert secret not in repr(client)
    assert secret not in repr(client._http.headers)
    assert secret not in repr(client._http.auth)
    assert AUTH_HEADER.lower() not in {k.lower() for k in client._http.headers}


def test_download_gzip_content_encoding_checks_wire_size(
    make_client: MakeClient, tmp_path: Path, fits_bytes: Callable[..., bytes]
) -> None:
    data = fits_bytes(shape=(64, 64))
    wire = gzip.compress(data)

    class Chunks(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield wire[:100]
            yield wire[100:]

    headers = {"Content-Encoding": "gzip", "Content-Length": str(len(wire))}
    client, _ = make_client(lambda r: httpx.Response(200, stream=Chunks(), headers=headers))
    got = client.download(_exp(), tmp_path)
    assert got.path.read_bytes() == data
    assert got.size_bytes == len(data)


def test_iter_archived_page_limit_guards_endless_listing(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_PAGES", 3)
    counter = iter(range(10_000))

    def answer(request: httpx.Request) -> httpx.Response:
        start = next(counter) * 10
        return httpx.Response(200, json=_records(2, start=start))

    client, rec = make_client(answer, page_size=2)
    with pytest.raises(SkynetError, match="more than 3 pages"):
        list(client.iter_archived(7))
    assert len(rec.requests) == 3


def test_get_observation_non_object_raises(make_client: MakeClient) -> None:
    client, _ = make_client(lambda r: httpx.Response(200, json=[1, 2]))
    with pytest.raises(SkynetError, match="expected a JSON object"):
        client.get_observation(3)


@given(st.integers(min_value=1, max_value=2**63 - 1), st.text(max_size=300))
def test_local_name_ignores_any_header(exp_id: int, text: str) -> None:
    name = local_name(exp_id)
    assert name == f"r{exp_id}.fits"
    assert re.fullmatch(r"r[0-9]+\.fits", name)
    assert has_fits_suffix(name)
    for header in (text, f'attachment; filename="{text}"', f"inline; filename*=UTF-8''{text}"):
        server_filename(header)  # metadata only: any text is accepted, never a path
