"""The incremental rule state decides exactly as the history did (issue 11).

The oracle is the history-based evaluation soapd used before:
:func:`soapd.alerts.rules.evaluate` on the earlier points, and
:func:`soapd.testing.rule_oracle.history_draft_alerts` on a store. Randomized
sequences (hypothesis) include frames arriving out of time order, frames processed
again (with the same or another configuration, so older rows are superseded) and
frames whose rows of a target are not covered.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soapd.alerts.history import (
    build_rule_states,
    decide_alerts,
    reference_points,
    stack_history,
)
from soapd.alerts.rules import INSTRUMENTAL, Point, RuleParams, evaluate
from soapd.alerts.stack_rules import stack_alerts
from soapd.alerts.state import advance, decide, evaluate_state, fold, stack_summary
from soapd.config import AlertsConfig, Config, LimitsConfig
from soapd.flags import Flag
from soapd.frames import record_result, without_off_footprint_rows
from soapd.models import FrameResult, StackRecord, Target
from soapd.store import Store
from soapd.store.rule_state import TargetState
from soapd.testing.lightcurves import register_frame, target_result
from soapd.testing.rule_oracle import history_draft_alerts

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
KINDS = [("P5", "R", "Vega"), ("P5", "R", INSTRUMENTAL), ("P4", "R", "Vega"), ("P5", "g", "AB")]
FLAG_CHOICES = [0, 0, 0, int(Flag.SATURATED), int(Flag.BLENDED)]
if "COSMIC_RAY" in Flag.__members__:
    FLAG_CHOICES.append(int(Flag["COSMIC_RAY"]))
#: Few values, so that equal, fainter and brighter magnitudes and limits all come up.
mags = st.sampled_from([math.nan, 16.0, 17.0, 17.2, 17.5, 18.0, 19.0, 20.0])


@st.composite
def points(draw: st.DrawFn, frame_id: int) -> Point:
    """A random point of frame ``frame_id`` (its mid-time is the caller's)."""
    tel, band, system = draw(st.sampled_from([KINDS[0]] * 4 + KINDS[1:]))
    det = draw(st.booleans())
    return Point(
        frame_id=frame_id,
        mjd=60000.0,
        telescope=tel,
        band=band,
        mag_system=system,
        is_detection=det,
        snr=draw(st.sampled_from([math.nan, 2.0, 3.0, 4.0, 5.0, 8.0, 20.0, math.inf])),
        mag=draw(mags) if det else math.nan,
        mag_err=draw(st.one_of(st.just(math.nan), st.sampled_from([0.01, 0.05, 0.2])))
        if det
        else math.nan,
        lim_mag=draw(mags),
        flags=draw(st.sampled_from(FLAG_CHOICES)) | (0 if det else int(Flag.UPPER_LIMIT)),
    )


params_st = st.builds(
    RuleParams,
    detection_snr=st.sampled_from([3.0, 5.0, 10.0]),
    deeper_limit_margin_mag=st.sampled_from([0.0, 0.5, 1.0]),
    change_min_mag=st.sampled_from([0.1, 0.3, 1.0]),
    change_min_sigma=st.sampled_from([1.0, 3.0]),
    rules_off=st.sampled_from([frozenset(), frozenset({"fading"}), frozenset({"new_detection"})]),
)


def _norm(state: TargetState) -> Any:
    """Return ``state`` comparable with ==: NaN as None (NaN != NaN)."""

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    kinds = {
        k: tuple(clean(getattr(s, f)) for f in s.__dataclass_fields__)
        for k, s in state.kinds.items()
    }
    return (state.n_points, state.newest_mjd, state.newest_frame_id, kinds)


def _order(p: Point) -> tuple[float, int]:
    return (p.mjd, p.frame_id)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), params=params_st)
def test_state_decides_as_the_history_over_random_arrivals(data: Any, params: RuleParams) -> None:
    """In order, out of order, processed again, or not covered: the same hits as the oracle."""
    stored: dict[int, Point] = {}  # the target's current point of each frame
    frame_mjd: dict[int, float] = {}  # every frame recorded so far (covered or not)
    state: TargetState | None = None
    for _ in range(data.draw(st.integers(1, 30))):
        again = bool(frame_mjd) and data.draw(st.integers(0, 4)) == 0
        frame_id = data.draw(st.sampled_from(sorted(frame_mjd))) if again else len(frame_mjd) + 1
        fresh = frame_id not in frame_mjd
        if fresh:
            frame_mjd[frame_id] = 60000.0 + data.draw(st.integers(0, 12)) / 4.0  # ties happen
        point = data.draw(points(frame_id)) if data.draw(st.integers(0, 9)) else None
        if point is not None:  # a frame processed again keeps its mid-time
            point = replace(point, mjd=frame_mjd[frame_id])
        in_order = (
            state is not None
            and fresh
            and (point is None or _order(point) > (state.newest_mjd, state.newest_frame_id))
        )
        calls: list[int] = []
        snapshot = tuple(sorted(stored.values(), key=_order))

        def history(snapshot: Sequence[Point] = snapshot, calls: list[int] = calls) -> Any:
            calls.append(1)
            return snapshot

        hits, new_state = decide(
            state, point, params, frame_id=frame_id, fresh_frame=fresh, history=history
        )
        if point is not None:
            earlier = [p for p in snapshot if p.frame_id != frame_id]
            earlier = [p for p in earlier if _order(p) < _order(point)]
            assert repr(hits) == repr(evaluate(earlier, point, params))
            stored[frame_id] = point
        else:
            assert hits == []
            stored.pop(frame_id, None)
        assert _norm(new_state) == _norm(fold(stored.values()))
        if in_order:
            assert calls == []  # the normal path never reads the history
        state = new_state


def _stack(*, epoch: str, band: str, n: int, det: bool, lim_mag: float, snr: float) -> StackRecord:
    mid = T0 + timedelta(hours=1)
    members = tuple(range(1, n + 1))
    return StackRecord(
        target_name="GRB A", epoch_key=f"P5|{band}|{epoch}", telescope="P5", band=band,
        bin_start_utc=mid, bin_end_utc=mid, mid_time_utc=mid, mean_mid_time_utc=mid,
        start_utc=mid, stop_utc=mid, exptime_s=80.0, total_exptime_s=80.0 * n,
        members=members, weights=tuple(1.0 / n for _ in members), considered=members,
        is_detection=det, snr=snr, mag=17.0 if det else math.nan, mag_err=0.05,
        lim_mag=lim_mag, mag_system="Vega",
    )  # fmt: skip


stacks_st = st.builds(
    _stack,
    epoch=st.sampled_from(["e1", "e2", "e3"]),
    band=st.sampled_from(["R", "g"]),
    n=st.integers(1, 4),
    det=st.booleans(),
    lim_mag=mags,
    snr=st.sampled_from([math.nan, 3.0, 6.0, 20.0]),
)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), params=params_st)
def test_stack_rules_decide_on_the_state_as_on_the_points(data: Any, params: RuleParams) -> None:
    """stack_alerts on :func:`stack_summary` of the state = on the single-frame points."""
    pts = [data.draw(points(i)) for i in range(data.draw(st.integers(0, 12)))]
    pts = [replace(p, mjd=60000.0 + p.frame_id) for p in pts]
    stack = data.draw(stacks_st)
    others = data.draw(st.lists(stacks_st, max_size=3))
    old = stack_alerts(stack, history=pts, other_stacks=others, params=params, obs_id=3)
    new = stack_alerts(
        stack, history=stack_summary(fold(pts)), other_stacks=others, params=params, obs_id=3
    )
    assert repr(new) == repr(old)


def test_a_new_detection_rearms_faded_below_limit() -> None:
    """det 17, limit 19 (faded), det 17, limit 19: faded again, as the history says."""

    def pt(i: int, det: bool) -> Point:
        return Point(
            frame_id=i, mjd=60000.0 + i, band="R", is_detection=det, snr=20.0 if det else 1.0,
            mag=17.0 if det else math.nan, mag_err=0.05 if det else math.nan,
            lim_mag=19.0, mag_system="Vega",
        )  # fmt: skip

    seq = [pt(0, True), pt(1, False), pt(2, True), pt(3, False)]
    state = TargetState()
    fired = []
    for i, p in enumerate(seq):
        hits = evaluate_state(state, p, RuleParams())
        assert repr(hits) == repr(evaluate(seq[:i], p, RuleParams()))
        fired += [h.rule for h in hits if h.rule == "faded_below_limit"]
        state = advance(state, p)
    assert fired == ["faded_below_limit", "faded_below_limit"]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fold_is_advance_point_by_point(data: Any) -> None:
    """fold (one pass per kind) = advance on each point in time order, from any start."""
    pts = [data.draw(points(i)) for i in range(data.draw(st.integers(0, 30)))]
    pts = [replace(p, mjd=60000.0 + data.draw(st.integers(0, 8))) for p in pts]
    ordered = sorted(pts, key=_order)
    cut = data.draw(st.integers(0, len(ordered)))
    start = fold(ordered[:cut])
    stepwise = start
    for p in ordered[cut:]:
        stepwise = advance(stepwise, p)
    assert _norm(fold(ordered[cut:], start)) == _norm(stepwise)


def test_advance_refuses_a_point_not_newer_than_the_state() -> None:
    p = Point(
        frame_id=5, mjd=60001.0, band="R", is_detection=False, snr=1.0,
        mag=math.nan, mag_err=math.nan, lim_mag=19.0,
    )  # fmt: skip
    state = advance(TargetState(), p)
    with pytest.raises(ValueError, match="not after"):
        advance(state, replace(p, frame_id=4))
    with pytest.raises(ValueError, match="not after"):
        advance(state, p)
    assert advance(state, replace(p, frame_id=6)).n_points == 2


def test_evaluate_state_of_an_empty_state_is_evaluate_of_no_history() -> None:
    det = Point(
        frame_id=1, mjd=60000.0, band="R", is_detection=True, snr=20.0,
        mag=17.0, mag_err=0.05, lim_mag=19.5, mag_system="Vega",
    )  # fmt: skip
    hits = evaluate_state(TargetState(), det, RuleParams())
    assert [h.rule for h in hits] == ["new_detection"]
    assert hits == evaluate([], det, RuleParams())


# ------------------------------------------------------------------- on a store
NAMES = ("GRB A", "GRB B")
FLAG_ROWS = [0, 0, 0, int(Flag.SATURATED), int(Flag.NOT_COVERED)]


@st.composite
def frame_results(draw: st.DrawFn, mid: datetime) -> FrameResult:
    """A random frame of both targets (limits, detections, suspect or not-covered rows)."""
    tel = draw(st.sampled_from(["PROMPT-5", "PROMPT-4"]))
    band = draw(st.sampled_from(["R", "g"]))
    lim_mag = draw(st.sampled_from([18.0, 19.0, 19.5, 20.5]))
    target_mags = {
        n: draw(st.one_of(st.none(), st.sampled_from([15.0, 16.0, 17.0, 18.5, 19.3])))
        for n in NAMES
    }
    res = target_result(
        target_mags, mid_time_utc=mid, band=band, telescope=tel, lim_mag=lim_mag,
        aperture_radii_px=(3.0, 5.0),
    )  # fmt: skip
    table = res.table
    flags = np.asarray(table["flag"]).astype(np.int64)
    for name in NAMES:
        sel = np.asarray(table["target_name"]) == name
        flags[sel] |= draw(st.sampled_from(FLAG_ROWS))
    table["flag"] = flags
    return replace(res, table=table)


def _assert_states_match_history(store: Store) -> None:
    ids = store.target_ids()
    states = store.rule_states_of(ids.values())
    for name, tid in ids.items():
        if tid in states:
            built = fold(reference_points(store.rule_history(name)))
            assert _norm(states[tid]) == _norm(built), name


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_record_result_alerts_as_the_history_oracle(data: Any) -> None:
    """Through ``record_result`` and a real store: the drafts equal the oracle's, always."""
    configs = [Config(), Config(limits=LimitsConfig(n_sigma=4.0))]
    assert configs[0].fingerprint() != configs[1].fingerprint()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.db") as store:
        for name in NAMES:
            store.upsert_target(Target(name=name, ra_deg=150.0, dec_deg=-30.0))
        frames: dict[int, datetime] = {}
        for k in range(data.draw(st.integers(2, 12))):
            again = bool(frames) and data.draw(st.integers(0, 3)) == 0
            if again:
                fid = data.draw(st.sampled_from(sorted(frames)))
                mid = frames[fid]
            else:
                mid = T0 + timedelta(minutes=data.draw(st.integers(0, 8)))
                fid = register_frame(store, f"f{k}", mid_time_utc=mid)
                frames[fid] = mid
            config = configs[data.draw(st.integers(0, 1))]
            res = without_off_footprint_rows(data.draw(frame_results(mid)))
            oracle = history_draft_alerts(store, fid, res, config=config)
            assert decide_alerts(store, fid, res, config=config).drafts == oracle
            record_result(store, fid, res, config=config, table_path=None)
            _assert_states_match_history(store)


# ------------------------------------------------------- the normal path, the store
def _setup(tmp_path: Path) -> Store:
    store = Store(tmp_path / "s.db")
    for name in NAMES:
        store.upsert_target(Target(name=name, ra_deg=150.0, dec_deg=-30.0))
    return store


def _record(store: Store, k: int, mags: dict[str, float | None], *, minutes: float) -> list[int]:
    mid = T0 + timedelta(minutes=minutes)
    fid = register_frame(store, f"n{k}", mid_time_utc=mid)
    return record_result(store, fid, target_result(mags, mid_time_utc=mid), config=Config(),
                         table_path=None)  # fmt: skip


def _counting_history(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real: Callable[[str], Any] = store.rule_history

    def spy(name: str) -> Any:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(store, "rule_history", spy)
    return calls


def test_in_order_frames_never_read_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _setup(tmp_path) as store:
        calls = _counting_history(store, monkeypatch)
        _record(store, 0, {"GRB A": None, "GRB B": None}, minutes=0)
        assert sorted(calls) == ["GRB A", "GRB B"]  # no state yet: built once
        calls.clear()
        for k in range(1, 6):
            _record(store, k, {"GRB A": None, "GRB B": 17.0}, minutes=k)
        assert calls == []
        tid = store.target_ids()["GRB B"]
        state = store.rule_states_of([tid])[tid]
        assert state.n_points == 6
        (kind,) = state.kinds.values()
        assert (kind.n_points, kind.any_real) == (6, True)


def test_an_older_frame_rebuilds_only_its_targets_from_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _setup(tmp_path) as store:
        for k in range(3):
            _record(store, k, {"GRB A": None, "GRB B": None}, minutes=10 + k)
        calls = _counting_history(store, monkeypatch)
        # GRB A detected in a frame older than every stored one: the first detection
        # in time, decided against the points before it (none) and rebuilt.
        ids = _record(store, 9, {"GRB A": 16.0}, minutes=5)
        assert calls == ["GRB A"]
        assert [a["rule"] for a in store.list_alerts()] == ["new_detection"]
        assert len(ids) == 1
        _assert_states_match_history(store)
        calls.clear()
        # the next newer frame is on the normal path again
        _record(store, 10, {"GRB A": 16.0, "GRB B": None}, minutes=20)
        assert calls == []
        _assert_states_match_history(store)


def test_writes_without_states_invalidate_them(tmp_path: Path) -> None:
    with _setup(tmp_path) as store:
        _record(store, 0, {"GRB A": None, "GRB B": None}, minutes=0)
        ids = store.target_ids()
        assert set(store.rule_states_of(ids.values())) == set(ids.values())
        mid = T0 + timedelta(minutes=1)
        fid = register_frame(store, "bare", mid_time_utc=mid)
        res = target_result({"GRB A": 17.0}, mid_time_utc=mid)
        store.save_result(fid, res, config_hash="x", soapd_version="x", table_path=None)
        assert set(store.rule_states_of(ids.values())) == {ids["GRB B"]}
        store.save_measurements(fid, target_result({"GRB B": 17.0}, mid_time_utc=mid).table,
                                config_hash="x", mjd=60000.0)  # fmt: skip
        assert store.rule_states_of(ids.values()) == {}
        # the next frame builds both again from history, and decides as the oracle
        mid = T0 + timedelta(minutes=2)
        fid = register_frame(store, "next", mid_time_utc=mid)
        res = target_result({"GRB A": 15.0, "GRB B": 17.0}, mid_time_utc=mid)
        oracle = history_draft_alerts(store, fid, res, config=Config())
        assert [d.rule for d in oracle] == ["brightening"]
        record_result(store, fid, res, config=Config(), table_path=None)
        assert [a["rule"] for a in store.list_alerts()] == ["brightening"]
        _assert_states_match_history(store)


def test_inactive_targets_and_disabled_alerts_still_advance_the_state(tmp_path: Path) -> None:
    with _setup(tmp_path) as store:
        store.remove_target("GRB B")
        off = Config(alerts=AlertsConfig(enabled=False))
        for k in range(3):
            mid = T0 + timedelta(minutes=k)
            fid = register_frame(store, f"o{k}", mid_time_utc=mid)
            res = target_result({"GRB A": 17.0, "GRB B": 17.0}, mid_time_utc=mid)
            record_result(store, fid, res, config=off if k < 2 else Config(), table_path=None)
        assert [a["target_name"] for a in store.list_alerts()] == []  # A detected before: no new
        ids = store.target_ids()
        states = store.rule_states_of(ids.values())
        assert {states[ids[n]].n_points for n in NAMES} == {3}
        _assert_states_match_history(store)


def test_stack_history_reads_the_state_once_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _setup(tmp_path) as store:
        mid = T0
        fid = register_frame(store, "bare", mid_time_utc=mid)
        res = target_result({"GRB A": None}, mid_time_utc=mid, lim_mag=19.0)
        store.save_result(fid, res, config_hash="x", soapd_version="x", table_path=None)
        calls = _counting_history(store, monkeypatch)
        (single,) = stack_history(store, "GRB A")  # no state yet: the points themselves
        assert (single.frame_id, single.lim_mag, calls) == (fid, 19.0, ["GRB A"])
        _record(store, 1, {"GRB A": None}, minutes=1)
        calls.clear()
        (summary,) = stack_history(store, "GRB A")
        assert calls == []
        assert (summary.frame_id, summary.is_detection, summary.lim_mag) == (-1, False, 19.5)
        assert stack_history(store, "nobody") == []


def test_build_rule_states_rebuilds_what_the_frames_built_and_then_decides_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``soapd migrate``'s up-front build gives the states the frames themselves wrote."""
    with _setup(tmp_path) as store:
        store.upsert_target(Target(name="never seen", ra_deg=10.0, dec_deg=10.0))
        for k, mag in enumerate((None, 17.2, None, 17.0, 16.1)):
            _record(store, k, {"GRB A": mag, "GRB B": 18.0 if k % 2 else None}, minutes=k)
        ids = store.target_ids()
        measured = [ids[n] for n in NAMES]
        before = {tid: _norm(s) for tid, s in store.rule_states_of(measured).items()}
        assert set(before) == set(measured)
        with store.db.atomic():
            store.rule_states.invalidate(ids.values())  # as after an upgrade
        ticks: list[int] = []
        assert build_rule_states(store, progress=lambda: ticks.append(1)) == len(NAMES)
        assert len(ticks) == len(ids)  # one tick per target, built or not
        after = store.rule_states_of(ids.values())
        assert {tid: _norm(s) for tid, s in after.items()} == before  # none for "never seen"
        assert build_rule_states(store) == 0  # nothing left to build
        # the next frame takes the normal path: no history read, the oracle's alerts
        calls = _counting_history(store, monkeypatch)
        mid = T0 + timedelta(minutes=9)
        fid = register_frame(store, "after", mid_time_utc=mid)
        res = target_result({"GRB A": 14.0, "GRB B": 18.0}, mid_time_utc=mid)
        oracle = history_draft_alerts(store, fid, res, config=Config())
        assert oracle  # GRB A brightened by 2 mag: the check below has something to compare
        calls.clear()
        new_ids = record_result(store, fid, res, config=Config(), table_path=None)
        assert calls == []
        rules = {a["alert_id"]: a["rule"] for a in store.list_alerts()}
        assert sorted(rules[i] for i in new_ids) == sorted(d.rule for d in oracle)
        _assert_states_match_history(store)
