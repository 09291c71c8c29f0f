"""skynetsoap's Soap surface beyond the README examples: prompts, warnings, layout, backends."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest
from astropy.coordinates import SkyCoord

from soapd import Soap, UnknownObservationWarning
from soapd.config.compat import SKYNETSOAP_IGNORED, SKYNETSOAP_KEYS
from tests.compat.conftest import OBSERVATIONS, ReadmeField

OBS = 12345
README = Path(__file__).parents[2] / "README.md"


@pytest.fixture(name="here")
def fixture_here(
    readme_field: ReadmeField, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh working folder, $SOAPD_CONFIG at the fake Skynet, the token in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOAPD_CONFIG", str(readme_field.config_path))
    monkeypatch.setenv("SKYNET_API_TOKEN", readme_field.fake.token)
    monkeypatch.delenv("SOAPD_SKYNET_TOKEN", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    return tmp_path


def _images(here: Path, obs: int = OBS) -> list[Path]:
    return sorted((here / "soap_images" / str(obs)).glob("*.fits"))


class _Terminal(io.StringIO):
    """A stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_clear_cache_confirm_true_asks_and_deletes_nothing_without_a_terminal(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Soap(OBS) as s:
        s.download()
        assert len(_images(here)) == 3
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        with pytest.warns(UserWarning, match="no terminal.*confirm=False"):
            stats = s.clear_cache()
        assert stats["images_deleted"] == 0
        assert len(_images(here)) == 3
        monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
        monkeypatch.setattr("builtins.input", lambda _q: "n")
        assert s.clear_cache(images=True, results=False)["images_deleted"] == 0
        assert len(_images(here)) == 3
        monkeypatch.setattr("builtins.input", lambda _q: "y")
        assert s.clear_cache(images=True, results=False)["images_deleted"] == 3
        assert _images(here) == []
        # The ledger stays true: the frames are downloaded again when asked.
        assert len(s.download()) == 3


def test_clear_cache_confirm_false_deletes_without_asking(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_prompt(_q: str) -> str:
        raise AssertionError("confirm=False must not ask")

    monkeypatch.setattr("builtins.input", no_prompt)
    with Soap(OBS) as s:
        s.run()
        (here / "soap_results" / str(OBS)).mkdir(parents=True)
        (here / "soap_results" / str(OBS) / "photometry.csv").write_text("x\n")
        stats = s.clear_cache(images=False, results=True, confirm=False)
        assert stats["results_deleted"] == 3 + 1  # 3 field-wide tables and the export
        assert len(_images(here)) == 3  # images kept
        assert not (here / "soap_results" / str(OBS) / "photometry.csv").exists()
        assert not [r for r in s.store.frames_with_tables() if r["obs_id"] == OBS]


def test_static_prune_cache_deletes_the_oldest_observation_first(here: Path) -> None:
    for obs in OBSERVATIONS:
        with Soap(obs) as s:
            s.download()
    stats = Soap.prune_cache(max_total_size_mb=0.0, keep_recent=1, confirm=False)
    assert len(stats["observations_deleted"]) == 1
    assert stats["files_deleted"] == 3
    remaining = [obs for obs in OBSERVATIONS if _images(here, obs)]
    assert len(remaining) == 1
    assert remaining != stats["observations_deleted"]


def test_unknown_observation_warns(here: Path) -> None:
    with (
        Soap(999_999) as s,
        pytest.warns(UnknownObservationWarning, match="unknown to the archive"),
    ):
        assert s.download() == []
    with Soap(999_998) as s, pytest.warns(UnknownObservationWarning, match="999998"):
        assert len(s.run()) == 0


def test_a_config_that_names_the_state_folder_keeps_soapd_layout(
    here: Path, readme_field: ReadmeField
) -> None:
    daemon = here / "daemon.toml"
    text = readme_field.config_path.read_text()
    daemon.write_text(text + f'[paths]\nstate_dir = "{here / "state"}"\n')
    with Soap(OBS, config=daemon) as s:
        paths = s.download()
        assert s.state_dir == here / "state"
    assert {p.parent for p in paths} == {here / "state" / "frames"}
    assert not (here / "soap_images").exists()


def test_image_dir_and_result_dir_are_skynetsoaps_roots(here: Path) -> None:
    with Soap(OBS, image_dir="imgs", result_dir="out") as s:
        paths = s.download()
        s.run()
        assert s.export("csv") == here / "out" / str(OBS) / "photometry.csv"
    assert {p.parent for p in paths} == {here / "imgs" / str(OBS)}


def test_run_images_measures_only_those_frames(here: Path) -> None:
    with Soap(OBS) as s:
        s.download()
        first = _images(here)[0]
        res = s.run(images=[str(first.relative_to(here))])
        assert set(res.table["image_file"]) == {first.name}
        with pytest.warns(UserWarning, match="not frames of this observation"):
            s.run(images=[first, here / "elsewhere.fits"])


@pytest.mark.usefixtures("here")
def test_verbose_sets_the_soapd_logger_level() -> None:
    Soap(OBS, verbose=True, read_only=True)
    assert logging.getLogger("soapd").level == logging.INFO
    Soap(OBS, verbose="debug", read_only=True)
    assert logging.getLogger("soapd").level == logging.DEBUG
    with pytest.raises(ValueError, match="verbose"):
        Soap(OBS, verbose="loud")


@pytest.mark.usefixtures("here")
def test_skynetsoap_backends_are_refused_clearly() -> None:
    class Calibrator:
        def calibrate_image(self) -> None: ...

    with pytest.raises(TypeError, match="calibrate_image"):
        Soap(OBS, calibrator=Calibrator())
    with pytest.raises(TypeError, match="WCS"):
        Soap(OBS, solver=object())


def test_plot_without_forced_positions_says_what_to_do(here: Path) -> None:
    with Soap(OBS) as s:
        with pytest.raises(RuntimeError, match="run"):
            _ = s.result
        s.run()
        with pytest.raises(ValueError, match="forced_positions"):
            s.plot()
        coord = SkyCoord(s.result.table["ra"][0], s.result.table["dec"][0], unit="deg")
        s.run(forced_positions=[coord])
        (png,) = s.plot(units="flux")
    assert png == here / "soap_results" / str(OBS) / "flux_plot.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_readme_table_names_every_skynetsoap_key() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Coming from skynetsoap") :]
    section = section[: section.index("\n## ")]
    for old, (new, _convert) in SKYNETSOAP_KEYS.items():
        assert re.search(rf"\b{re.escape(old.rsplit('.', 1)[-1])}\b", section), old
        assert re.search(rf"\b{re.escape(new.rsplit('.', 1)[-1])}\b", section), new
    for old in SKYNETSOAP_IGNORED:
        assert old.rsplit(".", 1)[-1] in section, old
    for name in ("clear_cache", "prune_cache", "cleanup_observation", "debug_image", "to_gcn"):
        assert f"{name}(" in section or f".{name}" in section, name
    assert "verbose=True" in section
