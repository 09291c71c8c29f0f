"""The Store facade: every repository method is a Store method; repositories stand alone."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soapd.models import Target
from soapd.store import Store
from soapd.store.connection import open_database
from soapd.store.ledger import Ledger
from soapd.store.measurements import Measurements
from soapd.store.migrations import migrations
from soapd.store.observations import Observations
from soapd.store.outbox import Outbox
from soapd.store.pruning import Pruning
from soapd.store.stacks import Stacks
from soapd.store.status import ServiceStatus
from soapd.store.targets import Targets

REPOS = {
    "ledger": Ledger,
    "targets": Targets,
    "measurements": Measurements,
    "outbox": Outbox,
    "stacks": Stacks,
    "observations": Observations,
    "status": ServiceStatus,
    "pruning": Pruning,
}
#: Repository methods the facade wraps in its own (multi-repository) methods.
WRAPPED = {"insert", "upsert", "lightcurve", "record_processed", "insert_stack"}


def _public(cls: type) -> set[str]:
    return {
        n
        for n, v in inspect.getmembers(cls, inspect.isfunction)
        if not n.startswith("_") and n != "now"
    }


@pytest.mark.parametrize("attr", sorted(REPOS))
def test_every_repository_method_is_a_store_method(tmp_path: Path, attr: str) -> None:
    with Store(tmp_path / "s.db") as store:
        repo = getattr(store, attr)
        assert type(repo) is REPOS[attr]
        assert repo.db is store.db
        for name in _public(REPOS[attr]) - WRAPPED:
            bound = getattr(store, name)
            assert bound.__self__ is repo, name
            assert bound.__func__ is getattr(REPOS[attr], name), name
            assert getattr(Store, name).__doc__ == getattr(REPOS[attr], name).__doc__


def test_no_two_repositories_define_the_same_public_method() -> None:
    seen: dict[str, str] = {}
    for attr, cls in REPOS.items():
        for name in _public(cls) - WRAPPED:
            assert name not in seen, (name, seen.get(name), attr)
            seen[name] = attr


def test_a_repository_works_on_its_own_connection(tmp_path: Path) -> None:
    db = open_database(tmp_path / "s.db")
    migrations.apply(db)
    targets = Targets(db)
    tid = targets.upsert_target(
        Target(name="A", ra_deg=1.0, dec_deg=2.0, trigger_time_utc=datetime(2026, 1, 1, tzinfo=UTC))
    )
    assert targets.target_ids() == {"A": tid}
    with Store(tmp_path / "s.db", migrate=False) as store:
        assert store.get_target("A") == targets.get_target("A")


def test_all_sql_lives_in_the_store() -> None:
    """No module outside soapd/store imports an SQLite driver or holds an SQL statement."""
    import ast
    import re

    import soapd

    root = Path(soapd.__file__).parent
    sql = re.compile(
        r"\b(SELECT|INSERT INTO|DELETE FROM|CREATE (TABLE|INDEX|VIEW))\b|UPDATE \w+ SET"
    )
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.is_relative_to(root / "store"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                offenders += [
                    f"{path}: imports {m}"
                    for m in mods
                    if m.split(".")[0] in ("sqlite3", "sqlite_utils")
                ]
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and sql.search(node.value)
            ):
                offenders.append(f"{path}:{node.lineno}: SQL text")
    assert offenders == []
