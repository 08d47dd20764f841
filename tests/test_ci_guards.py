"""The suite's own guards (issue 10): under CI a test that does not run fails the run
(tests/skip_guard.py), thread and unraisable exceptions fail the test (pyproject.toml), and the
``page`` fixture fails browser tests on page errors (tests/conftest.py).

Each guard is tried on a small inner pytest run (pytest's ``pytester``) that it must fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.allowed_skips import ALLOWED_SKIPS

ROOT = Path(__file__).resolve().parent.parent

# Inner test modules that each leave one test not run, and how the guard lists it.
NOT_RUN = {
    "skip call": ("import pytest\ndef test_a():\n    pytest.skip('not today')\n", "SKIPPED"),
    "skipif mark": (
        "import pytest\n@pytest.mark.skipif(True, reason='never')\ndef test_a():\n    pass\n",
        "SKIPPED",
    ),
    "skip in a fixture": (
        "import pytest\n@pytest.fixture\ndef part():\n    pytest.skip('no part here')\n"
        "def test_a(part):\n    pass\n",
        "SKIPPED",
    ),
    "module-level importorskip": (
        "import pytest\npytest.importorskip('no_such_module_for_skip_guard')\n"
        "def test_a():\n    pass\n",
        "SKIPPED",
    ),
    "module-level skip": (
        "import pytest\npytest.skip('later', allow_module_level=True)\ndef test_a():\n    pass\n",
        "SKIPPED",
    ),
    "xfail": (
        "import pytest\n@pytest.mark.xfail(reason='known')\ndef test_a():\n    assert False\n",
        "XFAILED",
    ),
    "xpass": (
        "import pytest\n@pytest.mark.xfail(reason='known')\ndef test_a():\n    pass\n",
        "XPASSED",
    ),
}
PASSING = "def test_kept():\n    assert 1 + 1 == 2\n"


# Plugins the inner runs do not need; Hypothesis's alone costs most of a second per run.
QUIET = ["-p", "no:hypothesispytest", "-p", "no:anyio", "-p", "no:cacheprovider"]


def run_guarded(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An in-process inner run with the skip guard loaded, as tests/conftest.py loads it."""
    return pytester.runpytest(*QUIET, "-p", "tests.skip_guard", "-ra", *args)


@pytest.mark.parametrize("kind", sorted(NOT_RUN))
def test_under_ci_a_test_that_does_not_run_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    source, shown = NOT_RUN[kind]
    pytester.makepyfile(test_inner=source, test_other=PASSING)
    monkeypatch.setenv("CI", "1")
    result = run_guarded(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*tests that did not run under CI (not on the allow-list)*",
            f"{shown} test_inner.py*",
            "CI: 1 test(s) did not run*so the run fails*",
        ]
    )
    assert result.parseoutcomes().get("failed") is None  # the tests themselves passed


@pytest.mark.parametrize("kind", sorted(NOT_RUN))
def test_without_ci_skips_only_show(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    source, _ = NOT_RUN[kind]
    pytester.makepyfile(test_inner=source, test_other=PASSING)
    monkeypatch.delenv("CI", raising=False)
    result = run_guarded(pytester)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "note: 1 test(s) did not run*under CI*would fail*",
            "*short test summary info*",  # -ra's list, with the reason
            "*test_inner.py*",
        ]
    )


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_any_ci_value_but_a_false_word_turns_the_guard_on(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    pytester.makepyfile(test_inner=NOT_RUN["skip call"][0])
    monkeypatch.setenv("CI", value)
    assert run_guarded(pytester).ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "off"])
def test_a_false_ci_value_leaves_the_guard_off(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    pytester.makepyfile(test_inner=NOT_RUN["skip call"][0])
    monkeypatch.setenv("CI", value)
    assert run_guarded(pytester).ret == pytest.ExitCode.OK


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["-k", "kept"], "DESELECTED test_inner.py::test_a: deselected"),
        (["-m", "not slow"], "DESELECTED test_inner.py::test_a: deselected"),
        (["--deselect", "test_inner.py::test_a"], "DESELECTED test_inner.py::test_a: deselected"),
        (["--ignore", "test_inner.py"], "IGNORED test_inner.py: --ignore test_inner.py"),
    ],
)
def test_under_ci_deselecting_or_ignoring_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], shown: str
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    slow: long\n")
    pytester.makepyfile(
        test_inner="import pytest\n@pytest.mark.slow\ndef test_a():\n    pass\n",
        test_other=PASSING,
    )
    monkeypatch.setenv("CI", "1")
    result = run_guarded(pytester, *args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines([shown])
    assert result.parseoutcomes()["passed"] == 1


def test_under_ci_a_run_with_every_test_deselected_fails_too(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_inner=PASSING)
    monkeypatch.setenv("CI", "1")
    assert run_guarded(pytester, "-k", "nothing_matches").ret == pytest.ExitCode.TESTS_FAILED


def test_a_failing_run_keeps_its_own_exit_status(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_inner="def test_a():\n    assert False\n")
    monkeypatch.setenv("CI", "1")
    assert run_guarded(pytester).ret == pytest.ExitCode.TESTS_FAILED
    monkeypatch.setenv("CI", "0")
    assert run_guarded(pytester).ret == pytest.ExitCode.TESTS_FAILED


ALLOW_LIST = """
from tests.skip_guard import AllowedSkip

ALLOWED_SKIPS = [
    AllowedSkip(test="test_inner.py::test_a[*]", when="no cluster", why="only with a cluster"),
    AllowedSkip(test="test_mod.py", when="no_such_module", why="an optional part"),
]
"""


def test_an_allowed_skip_passes_but_only_for_its_own_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(allow_inner=ALLOW_LIST)
    pytester.syspathinsert()
    pytester.makeini("[pytest]\nskip_guard_allow_list = allow_inner\n")
    pytester.makepyfile(
        test_inner="import pytest\n@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_a(n):\n    pytest.skip('no cluster' if n == 1 else 'no browser')\n",
        test_mod="import pytest\npytest.importorskip('no_such_module')\n",
    )
    monkeypatch.setenv("CI", "1")
    result = run_guarded(pytester)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out
    allowed, refused = out.split("short test summary info")[0].split("did not run under CI")
    assert "SKIPPED test_inner.py::test_a[1]: no cluster" in allowed
    assert "SKIPPED test_mod.py: could not import 'no_such_module'" in allowed
    assert "SKIPPED test_inner.py::test_a[2]: no browser" in refused
    assert "test_a[1]" not in refused and "test_mod" not in refused

    pytester.makepyfile(
        test_inner="import pytest\n@pytest.mark.parametrize('n', [1])\n"
        "def test_a(n):\n    pytest.skip('no cluster')\n"
    )
    assert run_guarded(pytester).ret == pytest.ExitCode.OK


@pytest.mark.parametrize("entry", ALLOWED_SKIPS, ids=[e.test for e in ALLOWED_SKIPS])
def test_each_allow_list_entry_names_a_real_skip_and_says_why(entry: object) -> None:
    test, when, why = entry  # type: ignore[misc]
    path, _, name = test.partition("::")
    source = (ROOT / path).read_text(encoding="utf-8")
    function = name.split("[")[0]
    assert re.search(rf"^def {re.escape(function)}\(", source, re.M), f"no test {test}"
    assert f'pytest.skip("{when}")' in source, f"{test} never skips with {when!r}"
    assert len(why) > 40, f"say why {test} may skip under CI"


# --- thread and unraisable exceptions ------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import threading\n"
        "def test_a():\n"
        "    worker = threading.Thread(target=lambda: 1 / 0)\n"
        "    worker.start()\n"
        "    worker.join()\n",
        "import gc\n"
        "class Leaky:\n"
        "    def __del__(self):\n"
        "        raise RuntimeError('in __del__')\n"
        "def test_a():\n"
        "    Leaky()\n"
        "    gc.collect()\n",
    ],
    ids=["thread", "unraisable"],
)
def test_project_filterwarnings_turn_unhandled_exceptions_into_failures(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, source: str
) -> None:
    cause = "ZeroDivisionError" if "Thread" in source else "RuntimeError: in __del__"
    lines = request.config.getini("filterwarnings")
    pytester.makeini("[pytest]\nfilterwarnings =\n" + "".join(f"    {w}\n" for w in lines))
    pytester.makepyfile(test_inner=source)
    result = pytester.runpytest(*QUIET)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert result.parseoutcomes() == {"failed": 1}
    assert cause in result.stdout.str()


# --- the browser page fixture ---------------------------------------------------------------

PAGE_TESTS = """
import pytest
from tests.conftest import browser, page  # noqa: F401


def pytest_configure(config):
    config.addinivalue_line("markers", "allow_console_errors(*patterns): allowed")
"""


@pytest.mark.browser
@pytest.mark.usefixtures("browser")  # skips (and so fails under CI) where Chromium is missing
def test_page_fixture_fails_on_page_and_console_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(PAGE_TESTS)
    pytester.makepyfile(
        test_inner="""
import pytest

def test_uncaught(page):
    page.set_content("<p>x</p>")
    page.evaluate("setTimeout(() => { throw new Error('boom-uncaught') }, 0)")
    page.wait_for_timeout(200)

def test_console(page):
    page.set_content("<p>x</p>")
    page.evaluate("console.error('boom-console')")
    page.wait_for_timeout(200)

@pytest.mark.allow_console_errors("^boom-allowed$")
def test_console_allowed(page):
    page.set_content("<p>x</p>")
    page.evaluate("console.error('boom-allowed')")
    page.wait_for_timeout(200)

def test_clean(page):
    page.set_content("<p>x</p>")
    assert page.text_content("p") == "x"
"""
    )
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_subprocess(*QUIET, timeout=120)
    out = result.stdout.str()
    assert result.parseoutcomes() == {"passed": 4, "errors": 2}, out
    assert "uncaught page error: Error: boom-uncaught" in out
    assert "console error at" in out and "boom-console" in out
    result.stdout.fnmatch_lines(
        [
            "ERROR test_inner.py::test_uncaught*",
            "ERROR test_inner.py::test_console*",
        ],
        consecutive=False,
    )
    assert "boom-allowed" not in out
