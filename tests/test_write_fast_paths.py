"""The write path's shortcuts (issue 14, B2/B3) answer exactly what the general path does.

- SQLite's forced merge remembers the newest entry id of each reference; the statement still
  checks it is the newest, so a newer entry added by another process, a deleted entry or a
  reassigned one sends the write where the general merge would. The memory is bounded.
- Scalar JSON encoding and the number coercion's fast path give the generic answers.
- Entry ids drawn from a pooled random source stay unique and ordered, also in a forked child.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_templates import Crm, CrmValidationError, open_store
from crm_templates import values as core_values
from crm_templates.model import Field
from crm_templates.storage import sqlite as sqlite_module

SLUG = "tracker"


def _crm(path: Path) -> Crm:
    crm = Crm(open_store(f"sqlite:///{path}"))
    crm.ensure_entity(slug=SLUG, entityMode="data", fields=[{"key": "n", "type": "number"},
                                                            {"key": "s"}])  # fmt: skip
    return crm


def _values(crm: Crm, ref: str = "cus_1") -> list[dict[str, Any]]:
    """The reference's entries' values, oldest first."""
    entries = crm.store.find_entries(SLUG, "customer", ref, limit=None)
    return [e.values for e in reversed(entries)]


def test_forced_write_follows_a_newer_entry_made_by_another_process(tmp_path: Path) -> None:
    one, other = _crm(tmp_path / "crm.db"), _crm(tmp_path / "crm.db")
    try:
        a = one.bind("cus_1")
        first = a.set_field(slug=SLUG, fieldKey="n", value=1, force=True)["id"]
        assert a.set_field(slug=SLUG, fieldKey="n", value=2, force=True)["id"] == first
        # Another store (as another process would) adds a newer entry: the remembered id is
        # no longer the newest, so the next forced write must land in the new one.
        second = other.bind("cus_1").add_field_value(slug=SLUG, fieldKey="s", value="x")["id"]
        assert a.set_field(slug=SLUG, fieldKey="n", value=3, force=True)["id"] == second
        assert _values(one) == [{"n": 2.0}, {"s": "x", "n": 3.0}]
        # Entries gone (cleared elsewhere): a forced write creates the first entry again.
        other.bind("cus_1").clear_entries(slug=SLUG)
        third = a.set_field(slug=SLUG, fieldKey="n", value=4, force=True)
        assert third["created"] is True and third["id"] not in (first, second)
        assert _values(one) == [{"n": 4.0}]
    finally:
        one.close()
        other.close()


def test_forced_write_after_the_entry_moved_to_another_reference(tmp_path: Path) -> None:
    crm = _crm(tmp_path / "crm.db")
    try:
        visitor = crm.bind("cus_v")
        moved = visitor.set_field(slug=SLUG, fieldKey="n", value=0, force=True)["id"]
        assert visitor.set_field(slug=SLUG, fieldKey="n", value=1, force=True)["id"] == moved
        crm.reassign_reference(slug="*", fromReferenceType="customer", fromReferenceId="cus_v",
                               toReferenceType="customer", toReferenceId="cus_m")  # fmt: skip
        # The remembered id now belongs to cus_m: the visitor's next write starts a new entry
        # and cus_m's entry keeps its value.
        fresh = visitor.set_field(slug=SLUG, fieldKey="n", value=2, force=True)
        assert fresh["created"] is True and fresh["id"] != moved
        assert _values(crm, "cus_m") == [{"n": 1.0}]
        assert _values(crm, "cus_v") == [{"n": 2.0}]
        # Two customers never write into each other's entries through the memory.
        again = crm.bind("cus_m").set_field(slug=SLUG, fieldKey="n", value=5, force=True)
        assert again["id"] == moved
        assert _values(crm, "cus_v") == [{"n": 2.0}]
        assert _values(crm, "cus_m") == [{"n": 5.0}]
    finally:
        crm.close()


def test_the_newest_id_memory_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "NEWEST_IDS_KEPT", 16)
    crm = _crm(tmp_path / "crm.db")
    try:
        for i in range(50):
            crm.bind(f"cus_{i}").set_field(slug=SLUG, fieldKey="n", value=i, force=True)
            crm.bind(f"cus_{i}").set_field(slug=SLUG, fieldKey="n", value=i + 1, force=True)
        store = crm.store
        assert 0 < len(store._newest_ids) <= 16  # type: ignore[attr-defined]
        for i in range(50):
            assert _values(crm, f"cus_{i}") == [{"n": float(i + 1)}]
    finally:
        crm.close()


_json_scalars = st.one_of(
    st.text(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.integers(),
    st.none(),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(_json_values)
def test_scalar_encoding_matches_the_encoder(value: Any) -> None:
    assert sqlite_module._json_value(value) == sqlite_module._encode(value)


def test_scalar_encoding_edge_cases() -> None:
    for value in ["", "é\u2028\"\\\n", -0.0, 1e308, 5e-324, math.nan, -math.inf, True, False,
                  10**30, None]:  # fmt: skip
        assert sqlite_module._json_value(value) == sqlite_module._encode(value)


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans()))
def test_number_fast_path_matches_the_generic_check(value: Any) -> None:
    field = Field(key="n", label="N", type="number")
    try:
        expected: Any = float(core_values._check(field, value, core_values.fieldtypes.number))
    except CrmValidationError as exc:
        expected = str(exc)
    try:
        got: Any = core_values.coerce(field, value)
    except CrmValidationError as exc:
        got = str(exc)
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(got, float):
        assert math.copysign(1.0, got) == math.copysign(1.0, expected)  # no "-0"


def test_number_fast_path_refuses_what_the_check_refuses() -> None:
    field = Field(key="n", label="N", type="number")
    for bad in (10**400, -(10**400), math.inf, math.nan, True):
        with pytest.raises(CrmValidationError):
            core_values.coerce(field, bad)
    assert core_values.coerce(field, -0.0) == 0.0
    assert math.copysign(1.0, core_values.coerce(field, -0.0)) == 1.0


def test_written_json_is_what_the_encoder_writes(tmp_path: Path) -> None:
    crm = _crm(tmp_path / "crm.db")
    try:
        view = crm.bind("cus_1")
        view.set_field(slug=SLUG, fieldKey="s", value='é "q" \\ \u2028', force=True)
        view.set_field(slug=SLUG, fieldKey="n", value=0.1 + 0.2, force=True)
        conn = crm.store._conn()  # type: ignore[attr-defined]
        raw = conn.execute("SELECT values_json FROM entries").fetchone()[0]
        assert json.loads(raw) == {"s": 'é "q" \\ \u2028', "n": 0.30000000000000004}
    finally:
        crm.close()


def test_ids_stay_unique_in_a_forked_child() -> None:
    from crm_templates.ids import new_id

    new_id()  # fill the parent's random pool before forking
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, json.dumps([new_id() for _ in range(50)]).encode())
        os.close(write)
        os._exit(0)
    os.close(write)
    parent = [new_id() for _ in range(50)]
    with os.fdopen(read) as fh:
        child = json.loads(fh.read())
    os.waitpid(pid, 0)
    tails = {i[12:] for i in parent} | {i[12:] for i in child}
    assert len(tails) == 100, "a forked child drew the same random tails as its parent"
    assert parent == sorted(parent)


def test_flush_does_not_wait_for_the_writer_to_linger(tmp_path: Path) -> None:
    """A writer that would linger 60 s for a fuller batch applies at once when someone flushes
    (issue 14, B3: a drained burst does not wait for the linger to run out)."""
    from crm_templates.writer import AsyncWriter

    crm = _crm(tmp_path / "crm.db")
    writer = AsyncWriter(crm.store, linger=60.0)
    try:
        entry = crm._new_entry(crm._schema(SLUG), ("customer", "cus_1"), {"n": 1.0})
        applied: list[str] = []

        def apply() -> None:
            crm.store.insert_entries([entry])
            applied.append(entry.id)

        from crm_templates.writer import PendingWrite

        writer.submit(PendingWrite("AddCrmFieldValue", {}, apply))
        assert writer.flush(timeout=20), "flush waited for the writer's linger"
        assert applied == [entry.id]
        assert _values(crm) == [{"n": 1.0}]
    finally:
        writer.close()
        crm.close()


@pytest.mark.parametrize("count", [1, 3, 63, 64, 255, 256, 257, 511, 600])
def test_inserting_runs_of_entries_stores_each_exactly(tmp_path: Path, count: int) -> None:
    """SQLite inserts runs of `ROWS_PER_INSERT` rows per statement and the rest in powers of two:
    every entry arrives whole, whatever the count."""
    from crm_templates.ids import new_id, utc_now
    from crm_templates.model import Entry

    crm = _crm(tmp_path / "crm.db")
    try:
        now = utc_now()
        entries = [
            Entry(id=new_id(), entity=SLUG, reference_type="customer", reference_id=f"cus_{i % 3}",
                  values={"n": float(i), "s": f"é{i}"}, title=f"t{i}", created_at=now,
                  updated_at=now)
            for i in range(count)
        ]  # fmt: skip
        crm.store.insert_entries(entries)
        stored = crm.store.get_entries_by_ids([e.id for e in entries])
        assert stored == {e.id: e for e in entries}
    finally:
        crm.close()


def test_a_duplicate_in_a_run_inserts_none_of_it(tmp_path: Path) -> None:
    from crm_templates.errors import DuplicateError
    from crm_templates.ids import new_id, utc_now
    from crm_templates.model import Entry

    crm = _crm(tmp_path / "crm.db")
    try:
        now = utc_now()
        entries = [
            Entry(id=new_id(), entity=SLUG, reference_type="customer", reference_id="cus_1",
                  values={"n": float(i)}, created_at=now, updated_at=now)
            for i in range(200)
        ]  # fmt: skip
        crm.store.insert_entries(entries[100:101])
        with pytest.raises(DuplicateError):
            crm.store.insert_entries(entries)
        assert crm.store.count_entries(SLUG) == 1
    finally:
        crm.close()


@pytest.mark.parametrize("count", [0, 1, 2, 3, 7, 255, 256, 257, 500, 1000])
def test_insert_chunks_cover_the_rows_in_few_statements(count: int) -> None:
    """Full statements, then powers of two: the sizes add up to ``count``, no size is above
    `ROWS_PER_INSERT`, and the rest takes at most one statement per bit."""
    from crm_templates.storage.sqlite import ROWS_PER_INSERT, _insert_chunks

    sizes = _insert_chunks(count)
    assert sum(sizes) == count
    assert all(n == ROWS_PER_INSERT or (0 < n < ROWS_PER_INSERT and n & (n - 1) == 0)
               for n in sizes)  # fmt: skip
    assert len(sizes) == count // ROWS_PER_INSERT + bin(count % ROWS_PER_INSERT).count("1")
