"""``soapd run --until-idle`` works from a folder that holds an empty ``soapd/`` folder.

The README installs soapd editable (``pip install -e .``): setuptools then finds
``soapd`` through a meta-path finder that comes *after* Python's path finder. The
worker pool's fork server is started as ``python -c ...``, so its ``sys.path``
begins with the current folder, where the path finder finds ``soapd/`` as an
empty namespace package before the editable finder is asked; every worker
forked from it then failed to import soapd (``BrokenProcessPool``).

The test runs the real console script as a subprocess under exactly that
condition: a ``sitecustomize`` installs an editable-style finder for the soapd
under test right after the path finder (as setuptools' finder sits), and the
current folder holds an empty ``soapd/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import soapd
from soapd.store import Store
from soapd.testing.demo_field import DemoField

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

#: A sitecustomize that finds ``soapd`` the way setuptools' editable finder does.
_EDITABLE_FINDER = '''
import sys
from importlib.machinery import PathFinder
from importlib.util import spec_from_file_location


class _EditableSoapd:
    """Like setuptools' __editable___*_finder: asked only after the path finder."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != "soapd":
            return None
        return spec_from_file_location("soapd", {init!r}, submodule_search_locations=[{pkg!r}])


sys.meta_path.insert(sys.meta_path.index(PathFinder) + 1, _EditableSoapd)
'''


def _console_script() -> Path:
    script = Path(sys.executable).with_name("soapd")
    if not script.is_file():
        pytest.skip(f"no soapd console script next to {sys.executable}")
    return script


def test_run_until_idle_from_a_folder_with_an_empty_soapd_folder(
    tmp_path: Path, demo_field_e2e: DemoField
) -> None:
    demo = demo_field_e2e
    package = Path(soapd.__file__).resolve().parent
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        _EDITABLE_FINDER.format(init=str(package / "__init__.py"), pkg=str(package))
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for frame in demo.frames[:2]:
        shutil.copy(frame.path, inbox / frame.path.name)
    cfg = tmp_path / "soapd.toml"
    cfg.write_text(
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\ncache_dir = "{tmp_path / "cache"}"\n'
        f'inbox_dir = "{inbox}"\n'
        f'[calibration]\ncatalog_files = ["{demo.catalog_path}"]\nonline = false\n'
        '[service]\nworkers = 1\n[logging]\nstyle = "plain"\n'
    )
    scratch = tmp_path / "scratch"
    (scratch / "soapd").mkdir(parents=True)  # the folder that broke the workers
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONSAFEPATH"}} | {
        "PYTHONPATH": str(hook),
        "SOAPD_CONFIG": "",
    }
    proc = subprocess.run(
        [str(_console_script()), "run", "--until-idle", "--config", str(cfg)],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BrokenProcessPool" not in proc.stderr
    with Store(tmp_path / "state" / "soapd.db") as store:
        backlog = store.backlog()
        rows = store.frames_in_state("processed")
    assert backlog.get("processed") == 2, (backlog, proc.stderr[-3000:])
    # Lines written by the worker processes while on a frame carry its id.
    worker_lines = [
        line for line in proc.stderr.splitlines() if "soapd.pipeline.calibrate:" in line
    ]
    assert worker_lines, proc.stderr[-3000:]
    tagged = [re.search(r"\[frame (\d+)\] ", line) for line in worker_lines]
    assert all(tagged), worker_lines
    assert {int(m.group(1)) for m in tagged if m} == {r.frame_id for r in rows}
