"""A pytest plugin: under CI, a test that does not run fails the run (issue 10, item 3).

A green run only counts if every test ran. When the environment variable ``CI`` is set (``.ci/run``
exports ``CI=1``; hosted CI services set ``CI=true``), each of these fails the run unless the test
is on the allow-list in ``tests/allowed_skips.py``:

- a skip at collection (a module-level ``pytest.skip``, ``importorskip`` or ``skipif``);
- a skip of a test (``skip``/``skipif`` marks, ``pytest.skip`` in the test or in a fixture);
- an ``xfail`` (the test failed as expected, or passed unexpectedly: either way it checked nothing);
- a deselection (``-k``, ``-m``, ``--deselect``) and ``--ignore``/``--ignore-glob``.

The run's tests still all run and report as usual; the violations are listed in a section of the
terminal summary and the exit status becomes 1 (``TESTS_FAILED``) if it was 0 or 5. Without
``CI`` nothing fails: skips show in pytest's ``-ra`` summary, with a line saying CI would refuse
them.

Loaded from tests/conftest.py (``pytest_plugins``). The ini option ``skip_guard_allow_list``
names the module holding ``ALLOWED_SKIPS`` (default ``tests.allowed_skips``).
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any, NamedTuple

import pytest

OFF = {"", "0", "false", "no", "off"}


class AllowedSkip(NamedTuple):
    """One allow-list entry: tests matching ``test`` may skip, but only with a reason
    containing ``when``; ``why`` records why that is legitimate."""

    test: str  # a node id; "*" matches anything ("tests/test_x.py::test_y[*]")
    when: str  # a substring of the skip reason (or "deselected"/"ignored" for those)
    why: str


class Unran(NamedTuple):
    """A test (or module) that did not run, and pytest's reason."""

    nodeid: str
    kind: str  # "skipped", "xfailed", "xpassed", "deselected", "ignored"
    reason: str


def ci_enabled() -> bool:
    """True when the ``CI`` environment variable is set to anything but a false-ish word."""
    return os.environ.get("CI", "").strip().lower() not in OFF


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "skip_guard_allow_list",
        "module with ALLOWED_SKIPS: tests that may skip under CI (tests/skip_guard.py)",
        default="tests.allowed_skips",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(config), "skip-guard")


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        return reason.removeprefix("Skipped: ")
    return str(longrepr)


class SkipGuard:
    """Records every test that did not run; under CI fails the session for those not allowed."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.enabled = ci_enabled()
        self.unran: list[Unran] = []
        module = importlib.import_module(str(config.getini("skip_guard_allow_list")))
        self.allowed: list[AllowedSkip] = list(module.ALLOWED_SKIPS)
        self.where = os.path.relpath(str(module.__file__), config.rootpath)
        for option, label in (("ignore", "--ignore"), ("ignore_glob", "--ignore-glob")):
            for path in config.getoption(option, None) or []:
                self.unran.append(Unran(str(path), "ignored", f"{label} {path}"))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:
            self.unran.append(Unran(report.nodeid, "skipped", _skip_reason(report)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        wasxfail = getattr(report, "wasxfail", None)
        if report.skipped:
            if wasxfail is not None:
                self.unran.append(Unran(report.nodeid, "xfailed", wasxfail or "xfail"))
            else:
                self.unran.append(Unran(report.nodeid, "skipped", _skip_reason(report)))
        elif report.passed and wasxfail is not None and report.when == "call":
            self.unran.append(Unran(report.nodeid, "xpassed", wasxfail or "xfail"))

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.unran.extend(Unran(item.nodeid, "deselected", "deselected") for item in items)

    def is_allowed(self, unran: Unran) -> bool:
        return any(
            _matches(unran.nodeid, entry.test) and entry.when in unran.reason
            for entry in self.allowed
        )

    def refused(self) -> list[Unran]:
        return [u for u in self.unran if not self.is_allowed(u)]

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        passing = session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if self.enabled and passing and self.refused():
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.unran:
            return
        refused = self.refused()
        allowed = [u for u in self.unran if u not in refused]
        tr = terminalreporter
        if not self.enabled:
            if refused:
                tr.write_line(
                    f"note: {len(refused)} test(s) did not run ({_kinds(refused)}); under CI "
                    f"(CI=1, as .ci/run sets) this run would fail: see {self.where}",
                    yellow=True,
                )
            return
        if allowed:
            tr.write_sep("=", f"allowed to skip under CI ({self.where})", yellow=True)
            for u in allowed:
                tr.write_line(f"{u.kind.upper()} {u.nodeid}: {u.reason}")
        if refused:
            tr.write_sep("=", "tests that did not run under CI (not on the allow-list)", red=True)
            for u in refused[:50]:
                tr.write_line(f"{u.kind.upper()} {u.nodeid}: {u.reason}")
            if len(refused) > 50:
                tr.write_line(f"... and {len(refused) - 50} more")
            tr.write_line(
                f"CI: {len(refused)} test(s) did not run ({_kinds(refused)}), so the run fails. "
                f"Make them run, or add them with a reason to {self.where}.",
                red=True,
                bold=True,
            )


def _matches(nodeid: str, pattern: str) -> bool:
    """Whether ``nodeid`` is ``pattern``, where "*" matches anything (brackets are literal)."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, nodeid) is not None


def _kinds(unran: list[Unran]) -> str:
    counts: dict[str, int] = {}
    for u in unran:
        counts[u.kind] = counts.get(u.kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())
