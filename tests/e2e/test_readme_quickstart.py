"""README.md's Quick start runs as written (issue 14).

The section's ``sh`` and ``python`` blocks are read from README.md and run in a
fresh folder, in order: the first shell line, ``make demo``, is run as the
Makefile runs it (``python -m soapd.cli.demo``; the test checks the recipe) so
that its ``./demo-run`` lands in that folder; every other shell line runs
unchanged in ``bash -e`` with this interpreter's ``bin`` folder first on PATH,
and the Python block runs unchanged. The files the blocks name must then exist
and say what the section says they say.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def _quickstart_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(sh|python)\n(.*?)```", section, flags=re.DOTALL)


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    blocks = _quickstart_blocks()
    assert [lang for lang, _ in blocks] == ["sh", "python"], "the section's layout changed"
    shell = blocks[0][1].splitlines()
    assert shell[0].split("#")[0].strip() == "make demo"
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8").split("\ndemo:", 1)[1]
    assert "$(BIN)/python -m soapd.cli.demo\n" in recipe, "make demo no longer runs the demo"
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("SOAPD_CONFIG", None)
    for key in ("SOAPD_SKYNET_TOKEN", "SKYNET_API_TOKEN", "CREDENTIALS_DIRECTORY"):
        env.pop(key, None)

    def run(argv: list[str], what: str) -> str:
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400, check=False
        )
        assert done.returncode == 0, f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    run([sys.executable, "-m", "soapd.cli.demo"], "make demo")
    out = run(["bash", "-e", "-c", "\n".join(shell[1:])], "the shell block")
    assert "DEMO-RISER" in out
    assert "rows from 12 frame(s) to night.ecsv" in out
    py = run([sys.executable, "-c", blocks[1][1]], "the Python block")
    assert py.startswith("SUBJECT: DEMO-RISER: Skynet/Prompt5 optical")

    for name in ("riser.ecsv", "riser.png", "riser.gcn", "riser.gcn.url", "night.ecsv"):
        assert (tmp_path / name).stat().st_size > 0, name
    for name in ("riser-api.ecsv", "riser-api.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    url = (tmp_path / "riser.gcn.url").read_text(encoding="utf-8")
    assert url.startswith("https://gcn.nasa.gov/circulars/new?")
