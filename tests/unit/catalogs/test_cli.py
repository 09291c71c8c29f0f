"""``soapd catalogs prefetch | list | info`` against the fake VizieR on 127.0.0.1."""

from __future__ import annotations

from soapd.cli import main


def _config(tmp_path, url):
    path = tmp_path / "soapd.toml"
    path.write_text(
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        f'[calibration]\nvizier_server = "{url}"\ntimeout_s = 5.0\ntile_deg = 0.25\n',
        encoding="utf-8",
    )
    return str(path)


def test_cli_prefetch_warms_cache_then_list_shows_tiles(tmp_path, fake_vizier, recorded, capsys):
    fake_vizier.tables["II/336/apass9"] = recorded("all_apass_ey_uma.ecsv")
    cfg = _config(tmp_path, fake_vizier.url)
    argv = ["catalogs", "prefetch", "--config", cfg, "--ra", "135.55", "--dec", "49.84"]
    code = main([*argv, "--radius", "0.1", "--band", "V", "--catalog", "apass"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "apass:" in out
    n = len(fake_vizier.requests)
    assert n >= 1
    assert main([*argv, "--radius", "0.1", "--band", "V", "--catalog", "apass"]) == 0
    assert len(fake_vizier.requests) == n  # second prefetch: all cached
    assert main(["catalogs", "list", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "apass" in out
    assert "tiles" in out


def test_cli_prefetch_every_catalog_failing_exits_1(tmp_path, fake_vizier, capsys):
    for source in (
        "J/ApJ/867/105/refcat2",
        "II/349/ps1",
        "II/379/smssdr4",
        "II/336/apass9",
        "I/360/syntphot",
    ):
        fake_vizier.behaviour[source] = "error"
    cfg = _config(tmp_path, fake_vizier.url)
    code = main(
        ["catalogs", "prefetch", "--config", cfg, "--ra", "10", "--dec", "10", "--radius", "0.1"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "FAILED" in out


def test_cli_prefetch_bad_arguments_exit_2(tmp_path, fake_vizier, capsys):
    cfg = _config(tmp_path, fake_vizier.url)
    assert main(["catalogs", "prefetch", "--config", cfg, "--ra", "10", "--dec", "95"]) == 2


def test_cli_info_lists_catalogs_and_chains(tmp_path, fake_vizier, capsys):
    cfg = _config(tmp_path, fake_vizier.url)
    assert main(["catalogs", "info", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "II/336/apass9" in out
    assert "chain r: refcat2 -> ps1" in out
