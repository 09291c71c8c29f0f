"""Tests of soapd.config: the schema, the loader's errors, the example file and secrets."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import pytest

from soapd import config as C
from soapd.cli import main
from soapd.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "soapd.example.toml"


def _sections() -> dict[str, type]:
    return {
        f.name: (f.type if isinstance(f.type, type) else None) for f in dataclasses.fields(C.Config)
    }


def test_example_config_parses_and_equals_defaults_where_set() -> None:
    cfg = C.load_config(EXAMPLE)
    assert cfg.photometry == C.PhotometryConfig()
    assert cfg.calibration == C.CalibrationConfig()


def test_example_config_is_generated_from_the_schema() -> None:
    """The committed example equals `python -m soapd.config.example` (regenerate it)."""
    from soapd.config.example import render

    assert EXAMPLE.read_text() == render(), "run: python -m soapd.config.example > " + str(EXAMPLE)


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    hints = {
        "skynet": C.SkynetConfig,
        "paths": C.PathsConfig,
        "service": C.ServiceConfig,
        "frame": C.FrameConfig,
        "extraction": C.ExtractionConfig,
        "photometry": C.PhotometryConfig,
        "limits": C.LimitsConfig,
        "calibration": C.CalibrationConfig,
        "alerts": C.AlertsConfig,
        "stacks": C.StacksConfig,
        "circular": C.CircularConfig,
        "retention": C.RetentionConfig,
        "logging": C.LoggingConfig,
        "web": C.WebConfig,
        "notifiers": C.NotifierConfig,
        "targets": C.TargetConfig,
    }
    top = {f.name for f in dataclasses.fields(C.Config)} - {"source"}
    assert top == set(hints)
    headers = list(re.finditer(r"^(?:# )?\[\[?(\w+)\]\]?$", text, re.MULTILINE))
    bodies = {
        m.group(1): text[m.end() : (headers[i + 1].start() if i + 1 < len(headers) else None)]
        for i, m in enumerate(headers)
    }
    for section, cls in hints.items():
        assert section in bodies, f"[{section}] missing from the example"
        for f in dataclasses.fields(cls):
            pattern = rf"^(# )?{f.name} = "
            assert re.search(pattern, bodies[section], re.MULTILINE), (
                f"{section}.{f.name} undocumented"
            )


def test_unknown_key_names_file_and_dotted_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[photometry]\naperture_mod = 'fixed'\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*photometry\.aperture_mod"):
        C.load_config(p)


@pytest.mark.parametrize(
    ("toml", "pattern"),
    [
        ("[photometry]\nfixed_radius_px = -1\n", r"photometry\.fixed_radius_px.*minimum"),
        ("[photometry]\naperture_mode = 'best'\n", r"aperture_mode.*not one of"),
        ("[skynet]\npoll_interval_s = 'soon'\n", r"skynet\.poll_interval_s must be a number"),
        ("[extraction]\nclean = 1\n", r"extraction\.clean must be true or false"),
        ("[calibration]\nmag_min = 19\nmag_max = 12\n", r"mag_min must be brighter"),
        ("[[targets]]\nname = 'a'\n[[targets]]\nname = 'a'\n", r"unique"),
        ("[[notifiers]]\nkind = 'email'\n", r"notifiers\[0\]\.recipients"),
        ("photometry = 3\n", r"\[photometry\] must be a table"),
    ],
)
def test_invalid_values_raise_config_error(tmp_path: Path, toml: str, pattern: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError, match=pattern):
        C.load_config(p)


def test_syntax_error_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[photometry\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        C.load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        C.load_config(tmp_path / "nope.toml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[paths]\nstate_dir = 'state'\n")
    assert C.load_config(p).paths.state_dir == tmp_path / "state"


def test_config_round_trips_through_to_dict() -> None:
    cfg = C.Config()
    data = C.to_dict(cfg)
    again = C.parse_config(tomllib.loads(tomllib_dump(data)))
    assert again.fingerprint() == cfg.fingerprint()


def tomllib_dump(data: dict[str, object]) -> str:
    """Dump the subset of TOML the config uses (tables of scalars, lists, inline tables)."""
    import json

    def val(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return json.dumps(v)

    out = []
    for section, body in data.items():
        if isinstance(body, dict):
            out.append(f"[{section}]")
            out.extend(f"{k} = {val(v)}" for k, v in body.items() if v is not None)
    return "\n".join(out) + "\n"


def test_fingerprint_changes_with_science_settings_only() -> None:
    cfg = C.Config()
    sci = cfg.replace(photometry=dataclasses.replace(cfg.photometry, fixed_radius_px=6.0))
    ops = cfg.replace(logging=dataclasses.replace(cfg.logging, level="DEBUG"))
    assert sci.fingerprint() != cfg.fingerprint()
    assert ops.fingerprint() == cfg.fingerprint()


def test_token_sources_in_order_and_never_shown(tmp_path: Path) -> None:
    secret = "s3cr3t-token-value"
    cred = tmp_path / "cred"
    cred.mkdir()
    (cred / "skynet-token").write_text(secret + "\n")
    tok_file = tmp_path / "tok"
    tok_file.write_text("from-file")
    sk = C.SkynetConfig(token_file=tok_file)
    tok = C.read_token(sk, {"CREDENTIALS_DIRECTORY": str(cred), "SOAPD_SKYNET_TOKEN": "env"})
    assert tok is not None
    assert tok.reveal() == secret
    assert secret not in repr(tok)
    assert secret not in str(tok)
    assert secret not in f"{tok}"
    env_tok = C.read_token(sk, {"SOAPD_SKYNET_TOKEN": "env"})
    assert env_tok is not None
    assert env_tok.reveal() == "env"
    file_tok = C.read_token(sk, {})
    assert file_tok is not None
    assert file_tok.reveal() == "from-file"
    assert C.read_token(C.SkynetConfig(), {}) is None
    with pytest.raises(ConfigError, match="cannot read"):
        C.read_token(C.SkynetConfig(token_file=tmp_path / "missing"), {})


def test_check_config_prints_redacted_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOAPD_SKYNET_TOKEN", "hush-hush-123")
    assert main(["check-config", "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "hush-hush-123" not in out
    assert "redacted" in out


def test_check_config_bad_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[nope]\n")
    assert main(["check-config", "--config", str(p)]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err


SECRETS = {
    "webhook": "https://hooks.example.org/services/T0SECRETPATH/B1?sig=QUERYSECRET",
    "apprise": "slack://APPRISETOKENA/APPRISETOKENB/CHAN",
    "userinfo": "mailtos://smtpuser:SMTPPASSWORD@mail.example.org",
    "token": "hush-hush-123",
}


def test_check_config_redacts_every_credential_and_prints_pure_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """check-config runs as ExecStartPre (its output lands in journald): no secret in it."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"""
[skynet]
api_url = "https://apiuser:BASEURLPW@api.example.org/2.0?key=BASEQUERY"

[[notifiers]]
kind = "webhook"
url = "{SECRETS["webhook"]}"

[[notifiers]]
kind = "apprise"
apprise_urls = ["{SECRETS["apprise"]}", "{SECRETS["userinfo"]}"]
"""
    )
    monkeypatch.setenv("SOAPD_SKYNET_TOKEN", SECRETS["token"])
    assert main(["check-config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # pure JSON: nothing before or after the object
    for secret in [
        *SECRETS.values(),
        "T0SECRETPATH",
        "QUERYSECRET",
        "APPRISETOKENA",
        "SMTPPASSWORD",
        "smtpuser",
        "BASEURLPW",
        "BASEQUERY",
        "apiuser",
    ]:
        assert secret not in out, secret
    assert data["notifiers"][0]["url"] == "https://hooks.example.org/<redacted>"
    assert data["notifiers"][1]["apprise_urls"] == ["slack://<redacted>", "mailtos://<redacted>"]
    assert data["skynet"]["api_url"] == "https://api.example.org/2.0?<redacted>"
    assert data["skynet"]["token"] == "<set, redacted>"
    assert len(data["fingerprint"]) == 64


def test_web_token_sources_in_order_and_never_shown(tmp_path: Path) -> None:
    cred = tmp_path / "cred"
    cred.mkdir()
    (cred / "web-token").write_text("from-credential\n")
    tok_file = tmp_path / "tok"
    tok_file.write_text("from-file\n")
    web = C.WebConfig(token_file=tok_file, token="from-toml")
    both = {"CREDENTIALS_DIRECTORY": str(cred), "SOAPD_WEB_TOKEN": "from-env"}
    assert C.read_web_token(web, both).reveal() == "from-credential"  # type: ignore[union-attr]
    assert C.read_web_token(web, {"SOAPD_WEB_TOKEN": "from-env"}).reveal() == "from-env"  # type: ignore[union-attr]
    assert C.read_web_token(web, {}).reveal() == "from-file"  # type: ignore[union-attr]
    assert C.read_web_token(C.WebConfig(token="from-toml"), {}).reveal() == "from-toml"  # type: ignore[union-attr]
    assert C.read_web_token(C.WebConfig(), {}) is None
    assert C.read_web_token(C.WebConfig(token="  "), {}) is None
    with pytest.raises(ConfigError, match=r"web\.token_file") as err:
        C.read_web_token(C.WebConfig(token_file=tmp_path / "missing"), {})
    assert "from-" not in str(err.value)


def test_web_token_is_not_in_repr_and_check_config_redacts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOAPD_WEB_TOKEN", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    p = tmp_path / "c.toml"
    p.write_text('[web]\nhost = "0.0.0.0"\ntoken = "web-secret-4711"\n')
    cfg = C.load_config(p)
    assert cfg.web.token == "web-secret-4711"
    assert "web-secret-4711" not in repr(cfg)
    assert "web-secret-4711" not in repr(cfg.web)
    assert main(["check-config", "--config", str(p)]) == 0
    out = capsys.readouterr().out
    assert "web-secret-4711" not in out
    data = json.loads(out.split("\n# config fingerprint")[0])
    assert data["web"]["token"] == "<set, redacted>"
    assert data["web"]["host"] == "0.0.0.0"
