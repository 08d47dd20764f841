"""Entries in and out as files: CSV and JSONL (issue 11, item 5; SPEC §11 "Files").

One row (CSV) or one JSON object per line (JSONL) is one entry of one entity. The columns are
the entry columns `ENTRY_COLUMNS` followed by one column per declared field, named by its key
(``field:KEY`` when a key is also an entry column's name, e.g. a field called ``title``; an
import accepts ``field:KEY`` for any field). Data-mode entities have no ``pipeline``/``stage``
columns. Pipelines and stages are written as slugs and read as a slug or an id.

Values go through the core on the way in: `values.coerce` per field type, `values.check_reference`,
`values.check_plain_string`, `ids.timestamp`, and the service's placement and reference-target
rules (`Crm.placement_for`, `Crm.check_targets`), so an import accepts exactly what the CRM
functions accept, and reports every problem with its line, its column and the core's message.

CSV cells (text; one documented encoding per type, so an export reads back exactly):

* an empty cell: the entry has no value for that field (the key is absent);
* ``\\N``: the value is null;
* number: the shortest text that reads back as the same float (``82``, ``82.5``, ``1e+300``);
* boolean: ``true`` / ``false``;
* multiselect, multi_reference: a JSON array (``["a","b"]``); a cell not starting with ``[`` is
  passed to the core as one item;
* json: the value as compact JSON text (a JSON string keeps its quotes: ``"hello"``);
* every other type (text, dates, emails, URLs, references, …): the stored text as it is.

Formula protection (CSV injection): a cell that is empty text, starts with one of
``= + - @ TAB CR LF '``, or is exactly ``\\N`` gets a leading apostrophe on export (number
cells excepted: ``-5`` is a number to a spreadsheet too). "Starts with" looks past leading
whitespace (``" =1+1"``) and reads compatibility forms as their plain character (the
full-width ``＝＋－＠`` and the small ``﹦﹢﹣﹫``, which spreadsheets in East Asian locales
take as formula starts), by Unicode NFKC. On import one leading apostrophe is always
removed, so ``'=cmd`` reads back as ``=cmd`` and ``''x`` as ``'x``; spreadsheets show such cells
as text rather than running them.

JSONL: values are JSON values as stored (no escaping); a key missing from an object is an
absent value, ``null`` is null. A json field's value is the JSON value itself.
An object naming a key twice, or nested too deeply to read, is a bad line.

Keyed imports (``key=``): a row matched by a *field* (``--key external_id``) must name the
matched entry's own reference when it names one; otherwise it is a problem, since a field value
may be shared by several customers' records and the match would move another customer's entry.
``--key id`` names the entry exactly and may move it.
"""

from __future__ import annotations

import csv
import json
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, TextIO, TypeVar

from . import events
from .errors import ConflictError, CrmError, CrmValidationError
from .functions import suggest
from .ids import new_id, timestamp, utc_now
from .model import Entity, Entry, Field
from .service import Crm
from .storage.base import Store
from .values import check_entry_id, check_plain_string, check_reference, coerce

T = TypeVar("T")

FORMATS = ("csv", "jsonl")
ENTRY_COLUMNS = (
    "id",
    "title",
    "reference_type",
    "reference_id",
    "pipeline",
    "stage",
    "created_at",
    "updated_at",
)
PLACEMENT_COLUMNS = ("pipeline", "stage")
FIELD_PREFIX = "field:"
NULL = "\\N"
ESCAPE = "'"
#: First characters that make a spreadsheet read a cell as a formula (OWASP), plus the escape.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", ESCAPE)
#: Formula starts after leading whitespace and NFKC (``＝`` is ``=``): see `escape_cell`.
_FORMULA_CHARACTERS = frozenset("=+-@")
LIST_TYPES = frozenset({"multiselect", "multi_reference"})
BATCH = 500  # rows per bulk write


class _Absent:
    """No value for a field (an empty CSV cell, a key missing from a JSONL object)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _bar(total: int | None, desc: str, unit: str, progress: bool | None) -> Any:
    from tqdm import tqdm

    # None: tqdm's own rule, a bar only when stderr is a terminal.
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=None if progress is None else not progress,
    )


# --- columns ------------------------------------------------------------------------------


def field_column(key: str) -> str:
    """The column name of field ``key``: the key, or ``field:KEY`` when it is an entry column."""
    return FIELD_PREFIX + key if key in ENTRY_COLUMNS else key


def columns_for(entity: Entity) -> list[str]:
    """The columns an export of ``entity`` writes, in order."""
    entry = [c for c in ENTRY_COLUMNS if entity.mode == "crm" or c not in PLACEMENT_COLUMNS]
    return entry + [field_column(f.key) for f in entity.fields]


# --- CSV cells ----------------------------------------------------------------------------


def escape_cell(text: str) -> str:
    """Protect a text cell: a leading apostrophe for empty text, formula-like text (also
    after leading whitespace, and in full-width or small forms: ``" =1"``, ``"＝1"``), text
    starting with an apostrophe, and the null marker."""
    if text == "" or text.startswith(FORMULA_STARTS) or text == NULL or _formula_like(text):
        return ESCAPE + text
    return text


def _formula_like(text: str) -> bool:
    """Whether ``text``'s first non-whitespace character is a formula start once normalised
    (NFKC maps ``＝`` U+FF1D and ``﹦`` U+FE66 to ``=``, and so on)."""
    first = text.lstrip()[:1]
    return bool(first) and unicodedata.normalize("NFKC", first)[:1] in _FORMULA_CHARACTERS


def unescape_cell(cell: str) -> str:
    """Undo `escape_cell`: remove one leading apostrophe."""
    return cell[1:] if cell.startswith(ESCAPE) else cell


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def encode_csv_value(f: Field, value: Any) -> str:
    """The CSV cell of a stored value of field ``f`` (`ABSENT` → an empty cell)."""
    if value is ABSENT:
        return ""
    if value is None:
        return NULL
    if f.type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_text(value)
    if f.type == "boolean" and isinstance(value, bool):
        return "true" if value else "false"
    if f.type in LIST_TYPES or f.type == "json" or not isinstance(value, str):
        return escape_cell(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    return escape_cell(value)


def decode_csv_value(f: Field, cell: str) -> Any:
    """What a CSV cell gives the core for field ``f``: `ABSENT`, None, or the text (a list for
    a list type's JSON array). Raises `CrmValidationError` for an unreadable JSON array."""
    if cell == "":
        return ABSENT
    if cell == NULL:
        return None
    text = unescape_cell(cell)
    if f.type in LIST_TYPES and text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if not isinstance(items, list):
            raise CrmValidationError(
                f'field {f.key!r} ({f.type}) expects a JSON array such as ["a", "b"]; '
                f"got {text[:80]!r}"
            )
        return items
    return text


def decode_json_value(f: Field, value: Any) -> Any:
    """What a JSONL value gives the core for field ``f``: the value, except that a json field's
    value is handed over as JSON text (the core reads text as JSON)."""
    if f.type == "json" and value is not None:
        return json.dumps(value, ensure_ascii=False)
    return value


def _entry_cell(value: Any) -> str:
    return "" if value is None or value == "" else escape_cell(str(value))


# --- export -------------------------------------------------------------------------------


@dataclass
class ExportReport:
    """What `export_entries` wrote."""

    entity: str
    format: str
    entries: int = 0
    columns: list[str] = field(default_factory=list)
    #: Keys found in entries that the entity does not declare (not exported), with counts.
    undeclared: dict[str, int] = field(default_factory=dict)


def export_entries(
    crm: Crm, slug: str, out: TextIO, fmt: str, *, progress: bool | None = False
) -> ExportReport:
    """Write every entry of entity ``slug``, oldest first, to ``out`` as CSV or JSONL.

    ``out`` is a text stream (for CSV opened with ``newline=""``). Raises `UnknownEntityError`
    for the slug and `CrmValidationError` for an unknown format. Values the entity does not
    declare are left out and counted in the report's ``undeclared``.
    """
    if fmt not in FORMATS:
        raise CrmValidationError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    entity = crm.get_entity(slug)
    columns = columns_for(entity)
    report = ExportReport(slug, fmt, columns=columns)
    pipelines = {p.id: p for p in entity.pipelines}
    stages = {(p.id, s.id): s.slug for p in entity.pipelines for s in p.stages}
    declared = {f.key for f in entity.fields}
    entry_columns = [c for c in columns if c in ENTRY_COLUMNS]
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(columns)
    store = crm.store
    with _bar(store.count_entries(entity=slug), "exporting", "entry", progress) as bar:
        for e in store.iter_entries(entity=slug):
            pipeline = pipelines.get(e.pipeline_id or "")
            entry_values: dict[str, Any] = {
                "id": e.id,
                "title": e.title,
                "reference_type": e.reference_type,
                "reference_id": e.reference_id,
                "pipeline": pipeline.slug if pipeline else e.pipeline_id,
                "stage": stages.get((e.pipeline_id or "", e.stage_id or ""), e.stage_id),
                "created_at": e.created_at,
                "updated_at": e.updated_at,
            }
            for key in e.values:
                if key not in declared:
                    report.undeclared[key] = report.undeclared.get(key, 0) + 1
            if writer is not None:
                row = [_entry_cell(entry_values[c]) for c in entry_columns]
                row += [encode_csv_value(f, e.values.get(f.key, ABSENT)) for f in entity.fields]
                writer.writerow(row)
            else:
                doc = {c: entry_values[c] for c in entry_columns}
                for f in entity.fields:
                    if f.key in e.values:
                        doc[field_column(f.key)] = e.values[f.key]
                out.write(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
            report.entries += 1
            bar.update(1)
    return report


# --- import -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an import file: its line (1 = the CSV header or the first JSONL
    line), the column (None for the whole row) and the core's message."""

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass
class ImportReport:
    """The outcome of `import_entries`. Nothing was written unless ``written`` is true."""

    entity: str
    format: str
    dry_run: bool = False
    key: str | None = None
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    written: bool = False

    @property
    def ok(self) -> bool:
        """True when no row had a problem."""
        return not self.problems

    @property
    def bad_lines(self) -> list[int]:
        """The lines with at least one problem, in order."""
        return sorted({p.line for p in self.problems})

    def summary(self) -> str:
        """One line: what was (or, in a dry run, would be) done, or why nothing was."""
        counts = f"{self.created} to create, {self.updated} to update, {self.unchanged} unchanged"
        if self.problems:
            return (
                f"{len(self.bad_lines)} bad line(s), {len(self.problems)} problem(s) in "
                f"{self.rows} row(s); nothing imported into {self.entity!r}"
            )
        if self.dry_run:
            return (
                f"dry run: {self.rows} row(s) valid for {self.entity!r}: {counts}; nothing written"
            )
        return (
            f"imported {self.rows} row(s) into {self.entity!r}: {self.created} created, "
            f"{self.updated} updated, {self.unchanged} unchanged"
        )


@dataclass
class _Row:
    line: int
    raw: dict[str, Any]  # column -> cell text (CSV) or JSON value (JSONL)
    entry: dict[str, Any] = field(default_factory=dict)  # entry column -> value or None
    values: dict[str, Any] = field(default_factory=dict)  # field key -> coerced value or ABSENT
    placement: tuple[str | None, str | None] | None = None
    bad: bool = False
    existing: Entry | None = None
    built: Entry | None = None


def _read_csv(fp: TextIO, problems: list[Problem]) -> tuple[list[str], list[_Row]]:
    reader = csv.reader(fp)
    try:
        header = next(reader, None)
        if header is None:
            problems.append(Problem(1, None, "the file is empty; expected a header row"))
            return [], []
        rows: list[_Row] = []
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells:
                continue  # a blank line
            if len(cells) != len(header):
                problems.append(
                    Problem(line, None, f"{len(cells)} cell(s); the header has {len(header)}")
                )
                rows.append(_Row(line, {}, bad=True))
                continue
            rows.append(_Row(line, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        problems.append(Problem(reader.line_num, None, f"not readable as CSV: {exc}"))
        return header or [], []
    return header, rows


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a JSON object naming a key twice is refused (json.loads would
    keep the last silently; a CSV file repeating a column is refused too)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def _read_jsonl(
    fp: TextIO, problems: list[Problem]
) -> tuple[list[str], list[_Row], dict[str, int]]:
    header: dict[str, int] = {}  # column -> first line holding it
    rows: list[_Row] = []
    for line, text in enumerate(fp, 1):
        if not text.strip():
            continue
        try:
            doc = json.loads(text, object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            problems.append(Problem(line, exc.key, f"the key {exc.key!r} appears twice"))
            rows.append(_Row(line, {}, bad=True))
            continue
        except (ValueError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            problems.append(Problem(line, None, f"not a JSON object: {reason[:200]}"))
            rows.append(_Row(line, {}, bad=True))
            continue
        if not isinstance(doc, dict):
            problems.append(Problem(line, None, f"not a JSON object: {text.strip()[:80]!r}"))
            rows.append(_Row(line, {}, bad=True))
            continue
        for key in doc:
            header.setdefault(key, line)
        rows.append(_Row(line, doc))
    return list(header), rows, header


def _map_columns(
    entity: Entity, header: Sequence[str], first_line: Mapping[str, int], problems: list[Problem]
) -> dict[str, tuple[str, str]]:
    """Column name -> ("entry", column) or ("field", key); unknown and repeated columns are
    problems."""
    fields = {f.key for f in entity.fields}
    mapping: dict[str, tuple[str, str]] = {}
    seen: dict[tuple[str, str], str] = {}
    for col in header:
        line = first_line.get(col, 1)
        if col in ENTRY_COLUMNS:
            target = ("entry", col)
        elif col.startswith(FIELD_PREFIX) and col[len(FIELD_PREFIX) :] in fields:
            target = ("field", col[len(FIELD_PREFIX) :])
        elif col in fields:
            target = ("field", col)
        else:
            problems.append(
                Problem(
                    line,
                    col,
                    f"entity {entity.slug!r} declares no field {col!r}."
                    f"{suggest(col, [*ENTRY_COLUMNS, *sorted(fields)])} Columns: "
                    f"{', '.join(ENTRY_COLUMNS)} and the declared keys "
                    f"{', '.join(sorted(fields)) or '(none)'}",
                )
            )
            continue
        if target in seen:
            problems.append(Problem(line, col, f"the same column as {seen[target]!r}"))
            continue
        seen[target] = col
        mapping[col] = target
    return mapping


def _decode_row(
    row: _Row,
    fmt: str,
    mapping: Mapping[str, tuple[str, str]],
    fields: Mapping[str, Field],
    problems: list[Problem],
) -> None:
    """Fill ``row.entry`` (decoded entry columns) and ``row.values`` (coerced by the core)."""

    def problem(column: str, exc: CrmError) -> None:
        problems.append(Problem(row.line, column, str(exc)))
        row.bad = True

    for col, (kind, name) in mapping.items():
        present = col in row.raw
        raw: Any = row.raw.get(col)
        if kind == "entry":
            if fmt == "csv":
                row.entry[name] = None if raw in ("", NULL) else unescape_cell(raw)
            else:
                row.entry[name] = raw
            continue
        f = fields[name]
        try:
            if fmt == "csv":
                value = decode_csv_value(f, raw)
            else:
                value = decode_json_value(f, raw) if present else ABSENT
            row.values[name] = value if value is ABSENT else coerce(f, value)
        except CrmError as exc:
            problem(col, exc)


def _reference_type(value: Any) -> Any:
    check_reference(value, "x")  # the type alone, with the core's message
    return value


def _reference_id(value: Any) -> Any:
    check_reference("customer", value)  # the id alone
    return value


def _check_entry_columns(crm: Crm, slug: str, row: _Row, problems: list[Problem]) -> None:
    """Validate the entry columns with the core's rules; normalises them in ``row.entry``."""

    def check(column: str, fn: Any) -> None:
        value = row.entry.get(column)
        if value is None:
            return
        try:
            row.entry[column] = fn(value)
        except CrmError as exc:
            problems.append(Problem(row.line, column, str(exc)))
            row.bad = True

    check("id", check_entry_id)
    check("title", lambda v: check_plain_string("title", v))
    check("reference_type", _reference_type)
    check("reference_id", _reference_id)
    check("created_at", timestamp)
    check("updated_at", timestamp)
    pipeline, stage = row.entry.get("pipeline"), row.entry.get("stage")
    if pipeline is not None or stage is not None:
        try:
            row.placement = crm.placement_for(slug, pipeline, stage)
        except CrmError as exc:
            problems.append(
                Problem(row.line, "stage" if stage is not None else "pipeline", str(exc))
            )
            row.bad = True


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def import_entries(
    crm: Crm,
    slug: str,
    fp: TextIO,
    fmt: str,
    *,
    key: str | None = None,
    dry_run: bool = False,
    progress: bool | None = False,
) -> ImportReport:
    """Import the entries of a CSV or JSONL file into entity ``slug``.

    Every row is checked first (nothing is written while checking); any problem — with the
    file, a column or a row — is reported in ``report.problems`` with its line, and nothing is
    written. ``dry_run`` stops after the check and reports what would be done.

    Without ``key`` every row creates an entry (an ``id`` that already exists is a problem) and
    the import is all-or-nothing: one transaction on SQLite; on a search backend, bulk requests
    of 500 whose entries are deleted again if a later one fails. With ``key`` (``"id"`` or a
    field key, e.g. ``"external_id"``) a row whose key matches an existing entry of the entity
    updates it — the file's columns replace those columns (an empty cell removes the value),
    columns not in the file are kept — and a row matching nothing creates one; a row that would
    change nothing is left alone, so an interrupted keyed import is finished by running it again.

    ``fp`` is a text stream (CSV opened with ``newline=""``). Raises `UnknownEntityError` for
    the slug, `CrmValidationError` for an unknown format; store failures raise `StoreError`.
    """
    if fmt not in FORMATS:
        raise CrmValidationError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    entity = crm.get_entity(slug)
    fields = {f.key: f for f in entity.fields}
    report = ImportReport(slug, fmt, dry_run=dry_run, key=key)
    problems = report.problems
    if fmt == "csv":
        header, rows = _read_csv(fp, problems)
        first_line: dict[str, int] = {}
    else:
        header, rows, first_line = _read_jsonl(fp, problems)
    report.rows = len(rows)
    mapping = _map_columns(entity, header, first_line, problems)
    key_field = _key_field(key, fields, mapping, problems)
    field_columns = [name for kind, name in mapping.values() if kind == "field"]
    entry_columns = {name for kind, name in mapping.values() if kind == "entry"}

    with _bar(len(rows), "checking", "row", progress) as bar:
        for row in rows:
            if not row.bad:
                _decode_row(row, fmt, mapping, fields, problems)
                _check_entry_columns(crm, slug, row, problems)
            bar.update(1)

    _find_existing(crm, slug, rows, key, key_field, problems)
    now = utc_now()
    for row in rows:
        if not row.bad:
            _build(crm, slug, row, field_columns, entry_columns, now, problems)
    _check_references(crm, slug, entity, rows, problems)
    problems.sort(key=lambda p: p.line)

    creates = [r.built for r in rows if r.built is not None and r.existing is None]
    updates = [
        (r.built, r.existing)
        for r in rows
        if r.built is not None and r.existing is not None and r.built != r.existing
    ]
    report.created, report.updated = len(creates), len(updates)
    report.unchanged = sum(1 for r in rows if r.built is not None and r.built == r.existing)
    if problems or dry_run:
        return report
    _write(crm, creates, updates, undo=key is None, progress=progress)
    report.written = True
    return report


def _key_field(
    key: str | None,
    fields: Mapping[str, Field],
    mapping: Mapping[str, tuple[str, str]],
    problems: list[Problem],
) -> str | None:
    """The field key an import matches rows on (None for ``id`` or no key)."""
    if key is None:
        return None
    name = key[len(FIELD_PREFIX) :] if key.startswith(FIELD_PREFIX) else key
    if key == "id":
        target = ("entry", "id")
    elif name in fields:
        target = ("field", name)
    else:
        problems.append(
            Problem(
                1,
                key,
                f"--key must be 'id' or a declared field; got {key!r}.{suggest(key, list(fields))}",
            )
        )
        return None
    if target not in mapping.values():
        problems.append(Problem(1, key, f"the key column {key!r} is not in the file"))
    return None if key == "id" else name


def _find_existing(
    crm: Crm,
    slug: str,
    rows: Sequence[_Row],
    key: str | None,
    key_field: str | None,
    problems: list[Problem],
) -> None:
    """Set ``row.existing`` for keyed imports; ids and keys that clash are problems."""

    def problem(row: _Row, column: str, message: str) -> None:
        problems.append(Problem(row.line, column, message))
        row.bad = True

    store = crm.store
    given_ids = [r.entry["id"] for r in rows if r.entry.get("id") is not None]
    by_id: dict[str, Entry] = {}
    for chunk in _chunks(dict.fromkeys(given_ids), BATCH):
        by_id.update(store.get_entries_by_ids(chunk))
    index: dict[str, list[Entry]] = {}
    if key_field is not None:
        for e in store.iter_entries(entity=slug):
            if key_field in e.values:
                index.setdefault(_canonical(e.values[key_field]), []).append(e)
    seen_ids: dict[str, int] = {}
    seen_keys: dict[str, int] = {}
    key_column = "id" if key == "id" else field_column(key_field or "")
    for row in rows:
        if row.bad:
            continue
        row_id = row.entry.get("id")
        if row_id is not None:
            if row_id in seen_ids:
                problem(row, "id", f"the same id as line {seen_ids[row_id]}: {row_id!r}")
                continue
            seen_ids[row_id] = row.line
        if key is None:
            if row_id is not None and row_id in by_id:
                problem(
                    row,
                    "id",
                    f"entry {row_id!r} already exists; import with --key id to update entries",
                )
            continue
        if key == "id":
            if row_id is None:
                problem(row, "id", "the key column id is empty")
                continue
            found = by_id.get(row_id)
            if found is not None and found.entity != slug:
                problem(row, "id", f"{row_id!r} is an entry of {found.entity!r}, not {slug!r}")
                continue
            row.existing = found
            continue
        value = row.values.get(key_field or "", ABSENT)
        if value is ABSENT or value is None:
            problem(row, key_column, f"the key column {key_column} is empty")
            continue
        canon = _canonical(value)
        if canon in seen_keys:
            problem(row, key_column, f"the same {key_column} as line {seen_keys[canon]}")
            continue
        seen_keys[canon] = row.line
        matches = index.get(canon, [])
        if len(matches) > 1:
            problem(
                row,
                key_column,
                f"{len(matches)} entries of {slug!r} hold this {key_column} "
                f"({', '.join(e.id for e in matches[:3])}); the key must pick one entry",
            )
            continue
        row.existing = matches[0] if matches else None
        moved = _moved_reference(row)
        if moved is not None:
            # A field value may be shared by records of several customers: a match by it must
            # not move another customer's entry onto this row's reference (attack11).
            problem(row, moved[0], moved[1])
            continue
        if row_id is not None:
            if row.existing is not None and row.existing.id != row_id:
                problem(
                    row, "id", f"{row_id!r} differs from entry {row.existing.id!r} found by key"
                )
            elif row.existing is None and row_id in by_id:
                problem(row, "id", f"entry {row_id!r} already exists (its {key_column} differs)")


def _moved_reference(row: _Row) -> tuple[str, str] | None:
    """(column, message) when ``row`` matched an entry by a field key but names another
    reference (``reference_type``/``reference_id``) than that entry's; else None. Moving an
    entry to another reference takes ``--key id`` (the entry named exactly)."""
    old = row.existing
    if old is None:
        return None
    for column, stored in (
        ("reference_type", old.reference_type),
        ("reference_id", old.reference_id),
    ):
        given = row.entry.get(column)
        if given is not None and given != stored:
            return column, (
                f"matches entry {old.id!r} of {old.reference_type}:{old.reference_id} by key, "
                f"but this row names {column} {given!r}; a match by a field never moves an "
                "entry to another reference (use --key id to move it)"
            )
    return None


def _build(
    crm: Crm,
    slug: str,
    row: _Row,
    field_columns: Sequence[str],
    entry_columns: set[str],
    now: str,
    problems: list[Problem],
) -> None:
    """The entry a valid row creates, or the new state of the entry it updates."""
    e = row.entry
    old = row.existing
    if old is None:
        if e.get("reference_id") is None:
            problems.append(Problem(row.line, "reference_id", "reference_id is required"))
            row.bad = True
            return
        created = e.get("created_at") or now
        row.built = Entry(
            id=e.get("id") or new_id(),
            entity=slug,
            reference_type=e.get("reference_type") or "customer",
            reference_id=e["reference_id"],
            values={k: v for k, v in row.values.items() if v is not ABSENT},
            title=e.get("title") or "",
            pipeline_id=(row.placement or crm.default_placement(slug))[0],
            stage_id=(row.placement or crm.default_placement(slug))[1],
            created_at=created,
            updated_at=e.get("updated_at") or created,
        )
        return
    values = dict(old.values)
    for key in field_columns:
        value = row.values.get(key, ABSENT)
        if value is ABSENT:
            values.pop(key, None)
        else:
            values[key] = value
    changes: dict[str, Any] = {"values": values}
    if "title" in entry_columns:
        changes["title"] = e.get("title") or ""
    for column in ("reference_type", "reference_id", "created_at"):
        if e.get(column) is not None:
            changes[column] = e[column]
    if row.placement is not None:
        changes["pipeline_id"], changes["stage_id"] = row.placement
    built = replace(old, **changes)
    if e.get("updated_at") is not None:
        built = replace(built, updated_at=e["updated_at"])
    if built != old:
        built = replace(built, updated_at=e.get("updated_at") or now)
    row.built = built


def _check_references(
    crm: Crm, slug: str, entity: Entity, rows: Sequence[_Row], problems: list[Problem]
) -> None:
    """Reference values must name entries of their target entities: in the store or among the
    file's own rows (one prefetch, then the service's rule per value)."""
    ref_fields = [f.key for f in entity.fields if f.target_entity]
    if not ref_fields:
        return
    own = {r.built.id: r.built for r in rows if r.built is not None}
    wanted: set[str] = set()
    for row in rows:
        for key in ref_fields:
            value = row.values.get(key, ABSENT)
            if value is not ABSENT and value is not None:
                wanted.update([value] if isinstance(value, str) else value)
    known: dict[str, Entry] = {}
    for chunk in _chunks(sorted(wanted - own.keys()), BATCH):
        known.update(crm.store.get_entries_by_ids(chunk))
    known.update(own)
    for row in rows:  # rows with other problems too: every problem is reported at once
        for key in ref_fields:
            value = row.values.get(key, ABSENT)
            if value is ABSENT or value is None:
                continue
            try:
                crm.check_targets(slug, {key: value}, known=known)
            except CrmError as exc:
                problems.append(Problem(row.line, field_column(key), str(exc)))
                row.bad = True
                row.built = None


def _write(
    crm: Crm,
    creates: Sequence[Entry],
    updates: Sequence[tuple[Entry, Entry]],
    *,
    undo: bool,
    progress: bool | None,
) -> None:
    """Write in bulk inside one `Store.atomic` section (one transaction on SQLite). On a
    failure with ``undo``, entries this call tried to insert that are there after all (a
    store without transactions, or a bulk request that failed in part) are deleted again
    before the error is raised."""
    # Entry signals (crm_templates.events) are sent when the unit ends: after the commit on
    # SQLite (nothing for a failed import); on a search cluster, for what was applied.
    who = events.current_actor()
    with events.unit(events.IMPORT if who is None else events.Actor("import", str(who))):
        _write_rows(crm, creates, updates, undo=undo, progress=progress)


def _write_rows(
    crm: Crm,
    creates: Sequence[Entry],
    updates: Sequence[tuple[Entry, Entry]],
    *,
    undo: bool,
    progress: bool | None,
) -> None:
    store = crm.store
    inserted: list[str] = []
    try:
        with store.atomic(), _bar(len(creates) + len(updates), "importing", "row", progress) as bar:
            for chunk in _chunks(creates, BATCH):
                inserted.extend(e.id for e in chunk)  # before: a failed bulk may apply some
                with store.batch():
                    store.insert_entries(chunk)
                if events.listening("entry.created", store):  # once per chunk
                    for e in chunk:
                        events.note("entry.created", store, e)
                bar.update(len(chunk))
            for pairs in _chunks(updates, BATCH):
                with store.batch():
                    stored = [store.update_entry(new, old.version) for new, old in pairs]
                for (_, old), after in zip(pairs, stored, strict=True):
                    _note_update(store, old, after)
                bar.update(len(pairs))
    except CrmError as exc:
        removed = 0
        if undo and inserted:
            for ids in _chunks(inserted, BATCH):
                for entry_id, entry in store.get_entries_by_ids(ids).items():
                    if store.delete_entry(entry_id):
                        removed += 1
                        events.note("entry.deleted", store, entry)
        if removed:
            raise type(exc)(
                f"{exc}; the {removed} entries written before the failure were deleted again: "
                "nothing imported"
            ) from exc
        if isinstance(exc, ConflictError):
            raise ConflictError(
                f"{exc}: an entry changed while importing; run the import again"
            ) from exc
        raise


def _note_update(store: Store, old: Entry, new: Entry) -> None:
    """The entry signals of one imported update: ``entry.updated`` for changed values, title
    or reference, ``entry.stage_changed`` for a new placement."""
    changes = {k: v for k, v in new.values.items() if old.values.get(k, ABSENT) != v}
    changes.update({k: None for k in old.values if k not in new.values})
    title = new.title if new.title != old.title else None
    moved_ref = (old.reference_type, old.reference_id) != (new.reference_type, new.reference_id)
    if changes or title is not None or moved_ref:
        events.note(
            "entry.updated",
            store,
            new,
            changes=changes,
            title=title,
            previous_reference=(old.reference_type, old.reference_id) if moved_ref else None,
        )
    if (old.pipeline_id, old.stage_id) != (new.pipeline_id, new.stage_id):
        events.note("entry.stage_changed", store, new, before=old)


__all__ = [
    "ABSENT",
    "ENTRY_COLUMNS",
    "FORMATS",
    "ExportReport",
    "ImportReport",
    "Problem",
    "columns_for",
    "decode_csv_value",
    "encode_csv_value",
    "escape_cell",
    "export_entries",
    "field_column",
    "import_entries",
    "unescape_cell",
]
