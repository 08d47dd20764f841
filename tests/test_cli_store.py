"""Which store a command uses (issue 11, item 6): --store, CRM_STORE_URL or --site, never a
silent ./crm.db; `customers --search`; `migrate` into a non-empty target; --help everywhere."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from crm_templates import Crm, open_store
from crm_templates.cli import main
from crm_templates.cli_store import NO_STORE, resolve_store_url, site_store_path
from crm_templates.storage import Store

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "entities:\n  - slug: note\n    entityMode: data\n    fields: [{key: body}]\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site folder with pages/ and a crm.yaml, but no store yet."""
    root = tmp_path / "site"
    (root / "pages").mkdir(parents=True)
    (root / "pages" / "index.html").write_text("hi")
    (root / "crm.yaml").write_text(SCHEMA)
    return root


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, without CRM_STORE_URL."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("CRM_STORE_URL", raising=False)
    return cwd


READS = [
    ["entries", "note", "--reference-id", "r"],
    ["export", "note", "--format", "csv"],
    ["customers"],
    ["customers", "--search", "x"],
]


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a[:2]))
def test_without_a_store_commands_stop_and_create_nothing(elsewhere: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, args, env={"CRM_STORE_URL": None})
    assert result.exit_code == 2
    assert NO_STORE in result.output and "Traceback" not in result.output
    assert list(elsewhere.iterdir()) == []  # no ./crm.db


def test_import_and_ensure_without_a_store_create_nothing(elsewhere: Path) -> None:
    (elsewhere.parent / "in.csv").write_text("reference_id\nr\n")
    (elsewhere.parent / "crm.yaml").write_text(SCHEMA)
    runner = CliRunner()
    for args in (["import", "note", "../in.csv"], ["ensure", "../crm.yaml"]):
        result = runner.invoke(main, args, env={"CRM_STORE_URL": None})
        assert result.exit_code == 2 and NO_STORE in result.output
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("args", [*READS, ["import", "note", "../in.csv"]], ids=str)
def test_reads_refuse_a_missing_sqlite_file(elsewhere: Path, args: list[str]) -> None:
    (elsewhere.parent / "in.csv").write_text("reference_id\nr\n")
    missing = elsewhere / "nope.db"
    for env in ({"CRM_STORE_URL": f"sqlite:///{missing}"}, {"CRM_STORE_URL": None}):
        extra = [] if env["CRM_STORE_URL"] else ["--store", "sqlite:///crm.db"]
        result = CliRunner().invoke(main, [*args, *extra], env=env)
        assert result.exit_code == 1, result.output
        assert "there is no store at" in result.output
        assert ("from CRM_STORE_URL" if not extra else "from --store") in result.output
    assert list(elsewhere.iterdir()) == []


def test_site_finds_the_sites_store(site: Path, elsewhere: Path) -> None:
    runner = CliRunner()
    before = runner.invoke(main, ["customers", "--site", str(site)], env={"CRM_STORE_URL": None})
    assert before.exit_code == 1 and str(site_store_path(site)) in before.output
    assert not (site / "instance").exists()  # a read creates not even the folder
    ensured = runner.invoke(
        main, ["ensure", str(site / "crm.yaml"), "--site", str(site)], env={"CRM_STORE_URL": None}
    )
    assert ensured.exit_code == 0, ensured.output
    assert site_store_path(site).exists()
    crm = Crm(open_store(f"sqlite:///{site_store_path(site)}"))
    crm.create_entry(slug="note", referenceId="r1", values={"body": "from the site"})
    crm.close()
    shown = runner.invoke(
        main,
        ["entries", "note", "--reference-id", "r1", "--site", str(site)],
        env={"CRM_STORE_URL": None},
    )
    assert shown.exit_code == 0 and "from the site" in shown.output
    assert list(elsewhere.iterdir()) == []


def test_store_wins_over_site(site: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    assert resolve_store_url(url, site, create=True) == url
    open_store(url).close()
    assert resolve_store_url(url, site, create=False) == url
    assert not (site / "instance").exists()
    assert resolve_store_url(None, site, create=True).endswith("site/instance/crm.db")
    assert (site / "instance").is_dir()


def test_seed_and_render_use_the_same_rule(site: Path, elsewhere: Path) -> None:
    (site / "seed.yaml").write_text(
        "entries:\n  - {entity: note, reference: {type: site, id: s}, values: {body: x}}\n"
    )
    runner = CliRunner()
    env = {"CRM_STORE_URL": None}
    render = runner.invoke(main, ["render", "/", "--site", str(site), "--customer", "c"], env=env)
    assert render.exit_code == 1 and "there is no store at" in render.output
    seeded = runner.invoke(main, ["seed", str(site)], env=env)
    assert seeded.exit_code == 0, seeded.output
    assert site_store_path(site).exists() and list(elsewhere.iterdir()) == []


# --- customers ------------------------------------------------------------------------------


def test_customers_lists_and_searches(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    crm = Crm(open_store(db))
    ada = crm.create_customer("ada@example.com", first_name="Ada", last_name="Lovelace")
    bob = crm.create_customer("bob@example.org", first_name="Bob")
    anon = crm.create_customer()
    crm.close()
    runner = CliRunner()
    every = runner.invoke(main, ["customers", "--store", db])
    assert every.exit_code == 0
    assert every.stdout.splitlines() == [
        f"{anon.id}\t-\t-",
        f"{bob.id}\tbob@example.org\tBob",
        f"{ada.id}\tada@example.com\tAda Lovelace",
    ]
    for text, found in (("LOVE", [ada]), ("example.", [bob, ada]), (anon.id[-6:], [anon])):
        result = runner.invoke(main, ["customers", "--search", text, "--store", db])
        assert result.exit_code == 0
        assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [c.id for c in found]
    none = runner.invoke(main, ["customers", "--search", "zzz", "--store", db])
    assert none.exit_code == 0 and none.stdout == "" and "no customers match 'zzz'" in none.output
    limited = runner.invoke(main, ["customers", "--limit", "1", "--json", "--store", db])
    assert '"email": null' in limited.stdout and "showing 1 of 3" in limited.output


# attack11: names and titles are written by visitors; printed raw, an ESC/CSI sequence retitled
# the operator's window or cleared the screen, and a CR or a bidi override hid what is stored.
TERMINAL_HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\rFAKE\u202eevil\u2028x\x00"
ACTING = ("\x1b", "\x07", "\x9b", "\r", "\u202e", "\u2028", "\x00")


def test_listings_print_no_terminal_controls(tmp_path: Path) -> None:
    """The real commands (a process, as an operator runs them): `customers` and `entries`,
    as a table and as JSON; the JSON still reads back as exactly the stored text."""
    import json

    db = f"sqlite:///{tmp_path / 'crm.db'}"
    crm = Crm(open_store(db))
    crm.ensure_entity(slug="note", entityMode="data", fields=[{"key": "body"}])
    eve = crm.create_customer(
        "eve@example.com", first_name=TERMINAL_HOSTILE, last_name="Ünïcødé 🙂"
    )
    crm.create_entry(slug="note", referenceId=eve.id, title=TERMINAL_HOSTILE,
                     values={"body": TERMINAL_HOSTILE})  # fmt: skip
    crm.close()

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "crm_templates", *args, "--store", db],
            cwd=ROOT, capture_output=True, encoding="utf-8", check=True,
        )  # fmt: skip
        for char in ACTING:
            assert char not in done.stdout, (args, char, done.stdout)
        return done.stdout

    table = run("customers")
    assert table.splitlines() == [
        f"{eve.id}\teve@example.com\t"
        + "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\x0dFAKE\\u202eevil\\u2028x\\x00 Ünïcødé 🙂"
    ]
    (listed,) = json.loads(run("customers", "--json"))
    assert (listed["first_name"], listed["last_name"]) == (TERMINAL_HOSTILE, "Ünïcødé 🙂")
    (line,) = run("entries", "note", "--reference-id", eve.id).splitlines()
    assert "\\x1b]0;pwned" in line and "\\u001b]0;pwned" in line  # title, then the JSON values
    (entry,) = json.loads(run("entries", "note", "--reference-id", eve.id, "--json"))
    assert entry["title"] == entry["values"]["body"] == TERMINAL_HOSTILE


def test_customers_on_the_search_backend(
    search_store_factory: Callable[..., Store], search_url: str
) -> None:
    store = search_store_factory()
    crm = Crm(store)
    crm.create_customer("zoe@example.com", first_name="Zoë")
    crm.create_customer("yan@example.com")
    url = f"{search_url}?prefix={store.prefix}"  # type: ignore[attr-defined]
    result = CliRunner().invoke(main, ["customers", "--search", "zoë", "--store", url])
    assert result.exit_code == 0
    assert result.stdout.strip().endswith("\tzoe@example.com\tZoë")
    assert len(result.stdout.splitlines()) == 1


# --- migrate --------------------------------------------------------------------------------


def test_migrate_refuses_a_missing_source_and_says_what_it_did(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(
        main, ["migrate", "--from", f"sqlite:///{tmp_path / 'no.db'}", "--to", "sqlite:///:memory:"]
    )
    assert missing.exit_code == 1 and "there is no store at" in missing.output
    assert not (tmp_path / "no.db").exists()
    src, dst = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    crm = Crm(open_store(src))
    crm.ensure_entity(slug="note", entityMode="data", fields=[{"key": "body"}])
    crm.create_customer("c@example.com")
    entry = crm.create_entry(slug="note", referenceId="r", values={"body": "x"})["id"]
    args = ["migrate", "--from", src, "--to", dst, "--no-progress"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "entries:   1 copied, 0 already there (identical), 0 different" in first.output
    assert "ok:" in first.output
    refused = runner.invoke(main, args)
    assert refused.exit_code == 1
    assert "already holds 1 entities, 1 customers, 1 entries; nothing copied" in refused.output
    merged = runner.invoke(main, [*args, "--merge"])  # idempotent: nothing to do
    assert merged.exit_code == 0, merged.output
    assert "entries:   0 copied, 1 already there (identical), 0 different" in merged.output
    crm.update_entry(entry, {"body": "changed in the source"})
    crm.close()
    different = runner.invoke(main, [*args, "--merge"])
    assert different.exit_code == 3
    assert f"entry {entry!r}: values, updated_at, version" in different.output
    assert "0 copied, 0 already there (identical), 1 different" in different.output


# --- --help ---------------------------------------------------------------------------------


def test_every_command_has_clean_help_in_a_real_process() -> None:
    names = sorted(main.commands)
    assert {"export", "import", "customers", "migrate", "ensure", "entries"} <= set(names)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "crm_templates", *([name] if name else []), "--help"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ["", *names]
    }
    outputs = {name: p.communicate(timeout=120) for name, p in procs.items()}
    listing = outputs[""][0]
    for name in names:
        out, err = outputs[name]
        assert procs[name].returncode == 0, (name, err)
        assert "Traceback" not in out + err and err == "", (name, err)
        assert out.startswith(f"Usage: crm-templates {name} "), (name, out)
        summary = out.split("\n\n")[1].strip().splitlines()[0]
        assert summary and not summary.startswith("Options"), (name, out)
        short = main.commands[name].get_short_help_str(limit=60)
        assert short and short[:20] in listing, (name, short)
    # Every summary fits the listing whole: none is cut off with "..." at 80 columns.
    commands = listing.split("Commands:", 1)[1].strip().splitlines()
    assert len(commands) >= len(names)
    assert not [line for line in commands if line.rstrip().endswith("...")], listing


def test_a_real_process_without_a_store_leaves_the_directory_empty(tmp_path: Path) -> None:
    for args in (["entries", "note", "--reference-id", "r"], ["customers"]):
        done = subprocess.run(
            [sys.executable, "-m", "crm_templates", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 2 and NO_STORE in done.stderr
        assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
