"""Crash safety: SIGKILL loses no acknowledged synchronous write; a graceful stop drains async."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crm_templates import Crm, open_store

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")

WRITER = textwrap.dedent(
    """
    import sys
    from crm_templates import Crm, open_store
    crm = Crm(open_store(sys.argv[1]))
    crm.ensure_entity(slug="log", entityMode="data", fields=[{"key": "n", "type": "number"}])
    view = crm.bind("cus_1")
    mode = sys.argv[2]
    n = 0
    while True:
        if mode == "sync":
            result = view.add_field_value(slug="log", fieldKey="n", value=n)
            print(result["id"], flush=True)  # acknowledged only after the write returned
        else:
            view.add_field_value(slug="log", fieldKey="n", value=n, **{"async": True})
            print(n, flush=True)
        n += 1
        if mode == "async" and n == int(sys.argv[3]):
            print("queued", flush=True)
            sys.exit(0)  # a graceful exit: the writer must drain what is queued
    """
)


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_sigkill_loses_no_acknowledged_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    proc = start(tmp_path, url, "sync")
    assert proc.stdout is not None
    acknowledged: list[str] = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # Whatever was printed after our last read was also acknowledged: collect it too.
    acknowledged += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    assert len(acknowledged) >= 300, "the writer did not get going"
    assert proc.returncode == -signal.SIGKILL
    store = open_store(url)
    try:
        stored = store.get_entries_by_ids(acknowledged)
        missing = [i for i in acknowledged if i not in stored]
        assert missing == [], f"{len(missing)} acknowledged writes lost"
    finally:
        store.close()


def test_graceful_exit_drains_async_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'drain.db'}"
    proc = start(tmp_path, url, "async", "2000")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.rstrip().endswith("queued")
    crm = Crm(open_store(url))
    try:
        assert crm.store.count_entries("log") == 2000
    finally:
        crm.close()


def test_close_drains_async_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'close.db'}"
    crm = Crm(open_store(url))
    crm.ensure_entity(slug="log", entityMode="data", fields=[{"key": "n", "type": "number"}])
    view = crm.bind("cus_1")
    for n in range(1500):
        view.add_field_value(slug="log", fieldKey="n", value=n, **{"async": True})
    crm.close()
    store = open_store(url)
    try:
        assert store.count_entries("log") == 1500
    finally:
        store.close()
