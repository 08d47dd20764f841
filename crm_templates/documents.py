"""YAML and JSON documents that remember where each value came from, checked against the JSON
Schemas shipped in ``crm_templates/schemas/`` (issue 11, item 4).

`read_document` parses a file and keeps a way back from a path in the data
(``("entities", 0, "fields", 2, "type")``) to its line and column; `check_document` validates
the data with `jsonschema` (draft 2020-12) and turns every failure into a
`SchemaFileError` naming the file, line, column, path and what is expected. The schemas'
``errorMessage`` and ``patternErrorMessage`` keywords (the VS Code extensions of JSON Schema,
also read by the YAML extension) supply the expectation where the generic wording would be
vague, so editors and the loader say the same thing.

YAML is read with PyYAML's safe loader (YAML 1.1: quote ``yes``, ``no``, ``on``, dates and
version numbers meant as text). Duplicate keys, which PyYAML would let the last one win, are
refused; so are aliases that expand into more than `MAX_NODES` values.
"""

from __future__ import annotations

import bisect
import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import SchemaFileError

#: The shipped schemas, by the name `crm-templates schema NAME` takes.
SCHEMA_NAMES = ("crm", "seed")
#: Byte order marks of encodings other than UTF-8: such a file is refused with a clear message.
_OTHER_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
#: A YAML document expanding (through aliases) into more values than this is refused.
MAX_NODES = 1_000_000

PathPart = str | int
DocPath = tuple[PathPart, ...]
Problem = tuple[str, int, int, str, str]


def schema_text(name: str) -> str:
    """The shipped JSON Schema ``crm`` (crm.yaml) or ``seed`` (seed.yaml), as its file's text.

    Raises `ValueError` for another name.
    """
    if name not in SCHEMA_NAMES:
        raise ValueError(f"no schema {name!r}; schemas: {', '.join(SCHEMA_NAMES)}")
    return (resources.files("crm_templates") / "schemas" / f"{name}.schema.json").read_text(
        encoding="utf-8"
    )


@cache
def shipped_schema(name: str) -> dict[str, Any]:
    """The shipped JSON Schema ``name`` (``crm`` or ``seed``) as a dict (cached: do not
    modify it)."""
    loaded = json.loads(schema_text(name))
    assert isinstance(loaded, dict)
    return loaded


def format_path(path: Sequence[PathPart]) -> str:
    """``("entities", 0, "fields", 2, "type")`` → ``entities[0].fields[2].type``; keys that are
    not plain words are quoted (``entities["a b"]``); the empty path gives ``""``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_$-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


@dataclass(frozen=True)
class Document:
    """A parsed YAML or JSON file: its ``data`` and where each part of it came from."""

    file: str
    data: Any
    #: ``"YAML"`` or ``"JSON"``.
    syntax: str
    _locate: Callable[[DocPath, bool], tuple[int, int]]

    def position(self, path: Sequence[PathPart], *, key: bool = False) -> tuple[int, int]:
        """1-based ``(line, column)`` of the value at ``path`` — of its key with ``key=True`` —
        or of the nearest enclosing value that exists."""
        return self._locate(tuple(path), key)

    def problem(self, path: Sequence[PathPart], message: str, *, key: bool = False) -> Problem:
        """One problem at ``path``: ``(file, line, column, path, message)``."""
        line, column = self.position(path, key=key)
        return (self.file, line, column, format_path(path), message)

    def error(
        self, path: Sequence[PathPart], message: str, *, key: bool = False
    ) -> SchemaFileError:
        """A `SchemaFileError` for one problem at ``path``."""
        return SchemaFileError(*self.problem(path, message, key=key))


def raise_problems(problems: list[Problem]) -> None:
    """Raise one `SchemaFileError` listing ``problems`` (sorted by position), if any."""
    if not problems:
        return
    unique = sorted(set(problems), key=lambda p: (p[1], p[2], p[3], p[4]))
    raise SchemaFileError(*unique[0], problems=tuple(unique))


# --- reading ----------------------------------------------------------------------------------


def read_document(path: str | Path) -> Document:
    """Parse a ``.json`` file as JSON and anything else as YAML, keeping positions.

    Raises `SchemaFileError` (at the offending line and column) for a file that cannot be read,
    is not valid UTF-8, or is not valid YAML/JSON, and for duplicate keys.
    """
    p = Path(path)
    file = str(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SchemaFileError(file, 1, 1, "", f"cannot read the file: {exc.strerror}") from None
    for bom, encoding in _OTHER_BOMS:
        if raw.startswith(bom):
            raise SchemaFileError(file, 1, 1, "", f"the file is {encoding} text: save it as UTF-8")
    try:
        # A UTF-8 byte order mark (some Windows editors write one) is skipped, as YAML does.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SchemaFileError(file, line, 1, "", f"not valid UTF-8 text ({exc.reason})") from None
    if p.suffix.lower() == ".json":
        return _read_json(file, text)
    return _read_yaml(file, text)


def _read_json(file: str, text: str) -> Document:
    scalar_error: ValueError | None = None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg}"
        raise SchemaFileError(file, exc.lineno, exc.colno, "", message) from None
    except RecursionError:
        raise SchemaFileError(file, 1, 1, "", "not valid JSON: nested too deeply") from None
    except ValueError as exc:  # valid syntax, a value Python cannot hold (a 5,000-digit number)
        scalar_error = exc
    starts = _line_starts(text)

    def at(offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(starts, offset)
        return line, offset - starts[line - 1] + 1

    try:
        positions, duplicates = _json_positions(text)
    except RecursionError:  # valid, but too deep for the position scan: report at the top
        positions, duplicates = {(): (0, 0)}, []
    if scalar_error is not None:
        where, offset = _failing_json_scalar(text, positions)
        raise SchemaFileError(
            file, *at(offset), format_path(where), f"not a usable value: {_reason(scalar_error)}"
        )
    if duplicates:
        problems = [
            (file, *at(offset), format_path(where), f"duplicate key {where[-1]!r}")
            for where, offset in duplicates
        ]
        raise_problems(problems)

    def locate(path: DocPath, key: bool) -> tuple[int, int]:
        for n in range(len(path), -1, -1):
            found = positions.get(path[:n])
            if found is not None:
                return at(found[0] if key and n == len(path) else found[1])
        return 1, 1

    return Document(file, data, "JSON", locate)


def _failing_json_scalar(
    text: str, positions: dict[DocPath, tuple[int, int]]
) -> tuple[DocPath, int]:
    """The path and offset of the first number `json.loads` cannot convert (the top when none
    is found)."""
    for where, (_, offset) in sorted(positions.items(), key=lambda item: item[1][1]):
        match = _JSON_SCALAR.match(text, offset)
        if match is None or not match.group().lstrip("-")[:1].isdigit():
            continue
        try:
            json.loads(match.group())
        except ValueError:
            return where, offset
    return (), 0


def _line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in re.finditer("\n", text)]


_JSON_WS = re.compile(r"[ \t\n\r]*")
_JSON_SCALAR = re.compile(r"-?(?:\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null|NaN|-?Infinity")


def _json_positions(
    text: str,
) -> tuple[dict[DocPath, tuple[int, int]], list[tuple[DocPath, int]]]:
    """Offsets of every key and value of a valid JSON text: ``{path: (key, value)}`` (the key
    offset is the value's for list items and the top), and the duplicate keys found."""
    from json.decoder import scanstring  # type: ignore[attr-defined]

    positions: dict[DocPath, tuple[int, int]] = {}
    duplicates: list[tuple[DocPath, int]] = []

    def skip(i: int) -> int:
        match = _JSON_WS.match(text, i)
        assert match is not None
        return match.end()

    def value(i: int, path: DocPath, key_at: int) -> int:
        i = skip(i)
        positions[path] = (key_at, i)
        char = text[i]
        if char == "{":
            i = skip(i + 1)
            if text[i] == "}":
                return i + 1
            seen: set[str] = set()
            while True:
                key_start = i
                name, i = scanstring(text, i + 1)
                if name in seen:
                    duplicates.append(((*path, name), key_start))
                seen.add(name)
                i = skip(i) + 1  # the colon
                i = skip(value(i, (*path, name), key_start))
                if text[i] == "}":
                    return i + 1
                i = skip(i + 1)  # the comma
        if char == "[":
            i = skip(i + 1)
            if text[i] == "]":
                return i + 1
            index = 0
            while True:
                start = skip(i)
                i = skip(value(start, (*path, index), start))
                index += 1
                if text[i] == "]":
                    return i + 1
                i += 1
        if char == '"':
            return int(scanstring(text, i + 1)[1])
        match = _JSON_SCALAR.match(text, i)
        assert match is not None
        return match.end()

    start = skip(0)
    value(start, (), start)
    return positions, duplicates


def _read_yaml(file: str, text: str) -> Document:
    import yaml
    from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_yaml_nodes(file, node)
        data = None if node is None else _construct(file, loader, node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SchemaFileError(file, line, column, "", _yaml_message(exc, text, mark)) from None
    except yaml.YAMLError as exc:  # no position known (e.g. a reader error)
        raise SchemaFileError(file, 1, 1, "", f"not valid YAML: {exc}") from None
    except RecursionError:
        raise SchemaFileError(file, 1, 1, "", "not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()

    def locate(path: DocPath, key: bool) -> tuple[int, int]:
        current: Node | None = node
        if current is None:
            return 1, 1
        mark = current.start_mark
        for n, part in enumerate(path):
            child = None
            if isinstance(current, MappingNode):
                # The last spelling wins, as in the data (merged keys come first).
                for k, v in reversed(current.value):
                    if isinstance(k, ScalarNode) and k.value == str(part):
                        if key and n == len(path) - 1:
                            return k.start_mark.line + 1, k.start_mark.column + 1
                        child = v
                        break
            elif (
                isinstance(current, SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(current.value)
            ):
                child = current.value[part]
            if child is None:
                break
            current = child
            mark = current.start_mark
        return mark.line + 1, mark.column + 1

    return Document(file, data, "YAML", locate)


def _construct(file: str, loader: Any, root: Any) -> Any:
    """``loader.construct_document(root)``; a scalar Python cannot build (``2020-13-45``, a
    5,000-digit integer: PyYAML raises a bare ValueError) becomes a `SchemaFileError` at
    that scalar."""
    from yaml.nodes import MappingNode, ScalarNode

    try:
        return loader.construct_document(root)
    except (ValueError, OverflowError) as exc:
        failure = exc
    # Find the scalar: try each one on its own (scalars do not depend on each other).
    stack: list[tuple[Any, DocPath]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            # A failed construction leaves the loader's bookkeeping half done: reset it.
            loader.constructed_objects, loader.recursive_objects = {}, {}
            loader.state_generators = []
            try:
                loader.construct_object(node, deep=True)
            except (ValueError, OverflowError) as exc:
                mark = node.start_mark
                raise SchemaFileError(
                    file, mark.line + 1, mark.column + 1, format_path(path),
                    f"not a usable value {_clipped(node.value)}: {_reason(exc)} "
                    "(quote it to keep it as text)",
                ) from None  # fmt: skip
        elif isinstance(node, MappingNode):
            for k, v in reversed(node.value):
                name = k.value if isinstance(k, ScalarNode) else "?"
                stack.extend([(v, (*path, name)), (k, path)])
        else:
            stack.extend((child, (*path, n)) for n, child in reversed(list(enumerate(node.value))))
    raise SchemaFileError(file, 1, 1, "", f"not a usable value: {_reason(failure)}") from None


def _reason(exc: BaseException) -> str:
    """Why a scalar could not be built, in the user's terms (not Python's advice)."""
    if "digits" in str(exc):
        return "a number with too many digits (at most 4,300)"
    return str(exc)


def _clipped(text: str, limit: int = 40) -> str:
    """``text`` quoted, cut to ``limit`` characters (a message never echoes a huge value)."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _yaml_message(exc: Any, text: str, mark: Any) -> str:
    problem = exc.problem or exc.context or "invalid"
    if "'\\t'" in problem or (mark is not None and text[mark.index : mark.index + 1] == "\t"):
        return "a tab character: YAML indents with spaces only (replace the tab by spaces)"
    context = f" ({exc.context})" if exc.context and exc.problem else ""
    return f"not valid YAML: {problem}{context}"


def _check_yaml_nodes(file: str, root: Any) -> None:
    """Refuse duplicate mapping keys and alias bombs, before the data is built."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    problems: list[Problem] = []
    # Post-order walk without recursion; a node reached again through an alias is sized once.
    stack: list[tuple[Any, bool, DocPath]] = [(root, False, ())]
    while stack:
        node, done, path = stack.pop()
        if id(node) in sizes:
            continue
        if isinstance(node, MappingNode):
            children = [
                (child, (*path, k.value if isinstance(k, ScalarNode) else "?"))
                for k, v in node.value
                for child in (k, v)
            ]
        elif isinstance(node, SequenceNode):
            children = [(child, (*path, n)) for n, child in enumerate(node.value)]
        else:
            children = []
        if not done:
            if id(node) in open_nodes:
                mark = node.start_mark
                raise SchemaFileError(
                    file, mark.line + 1, mark.column + 1, format_path(path),
                    "an alias refers to a value that contains it (a recursive structure)",
                )  # fmt: skip
            open_nodes.add(id(node))
            stack.append((node, True, path))
            stack.extend((c, False, at) for c, at in children if id(c) not in sizes)
            if isinstance(node, MappingNode):
                seen: set[tuple[str, str]] = set()
                for k, _ in node.value:
                    if not isinstance(k, ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
                        continue
                    ident = (k.tag, k.value)
                    if ident in seen:
                        problems.append(
                            (
                                file,
                                k.start_mark.line + 1,
                                k.start_mark.column + 1,
                                format_path((*path, k.value)),
                                f"duplicate key {k.value!r} (each key may appear once in a "
                                "mapping)",
                            )
                        )
                    seen.add(ident)
            continue
        open_nodes.discard(id(node))
        size = 1 + sum(sizes.get(id(child), 1) for child, _ in children)
        if size > MAX_NODES:
            mark = node.start_mark
            raise SchemaFileError(
                file,
                mark.line + 1,
                mark.column + 1,
                format_path(path),
                f"the document expands (through aliases) into more than {MAX_NODES:,} values",
            )
        sizes[id(node)] = size
    raise_problems(problems)


# --- validating -------------------------------------------------------------------------------


@cache
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(shipped_schema(name))


def check_document(document: Document, name: str) -> None:
    """Validate ``document.data`` against the shipped schema ``name`` (``crm`` or ``seed``).

    Raises `SchemaFileError` listing every problem, each at its line and column.
    """
    errors = list(_validator(name).iter_errors(document.data))
    # A value of the wrong type fails every alternative of an if/then/else too: keep only the
    # outermost type error at that path (it carries the most general expectation).
    wrong_type: dict[DocPath, Any] = {}
    for error in errors:
        path = tuple(error.absolute_path)
        if error.validator == "type" and (
            path not in wrong_type
            or len(error.absolute_schema_path) < len(wrong_type[path].absolute_schema_path)
        ):
            wrong_type[path] = error
    problems: list[Problem] = []
    for error in errors:
        path = tuple(error.absolute_path)
        if path in wrong_type and error is not wrong_type[path]:
            continue
        problems.extend(_problems(document, error))
    raise_problems(problems)


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "nothing",
}


def shown_value(value: Any) -> str:
    """A short description of a parsed value for messages: ``the string 'x'``, ``a list``…"""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"the string {text!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    # YAML 1.1 turns unquoted dates and times into these.
    return f"{type(value).__name__} {value} (quote it in YAML to keep it as text)"


def _suggest(word: Any, choices: list[str]) -> str:
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


def _problems(document: Document, error: Any) -> Iterator[Problem]:
    """The problems one `jsonschema.ValidationError` stands for (an unknown-key error may
    name several keys)."""
    path: DocPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    validator = error.validator
    if "propertyNames" in error.relative_schema_path:
        # The key itself is wrong: point at it.
        yield document.problem((*path, error.instance), _message(error), key=True)
        return
    if (
        validator in ("additionalProperties", "unevaluatedProperties")
        and schema.get(validator) is False
    ):
        allowed = schema.get("properties", {})
        accepted = [k for k in allowed if k != "$schema" and not _is_alias(allowed[k])]
        for extra in error.instance:
            if extra in allowed:
                continue
            message = (
                f"unknown key {extra!r}.{_suggest(extra, list(allowed))} Accepted keys: "
                f"{', '.join(accepted)}"
            )
            if any(_is_alias(v) for v in allowed.values()):
                message += " (camelCase spellings too)"
            yield document.problem((*path, extra), message, key=True)
        return
    if validator in ("anyOf", "oneOf") and not schema.get("errorMessage"):
        branch = _matching_branch(error)
        if branch:
            # The value has the type of one alternative: its problems are the real ones.
            for sub in branch:
                yield from _problems(document, sub)
            return
    if validator == "required":
        for name in error.validator_value:
            if isinstance(error.instance, Mapping) and name not in error.instance:
                message = schema.get("errorMessage") or f"missing required key {name!r}"
                yield document.problem(path, message)
        return
    yield document.problem(path, _message(error))


def _matching_branch(error: Any) -> list[Any]:
    """The errors of the one ``anyOf``/``oneOf`` alternative whose type the value has (``[]``
    when none or several do)."""
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    right_type = [
        subs
        for subs in branches.values()
        if not any(s.validator == "type" and not s.relative_path for s in subs)
    ]
    return right_type[0] if len(right_type) == 1 else []


def _is_alias(subschema: Any) -> bool:
    """A camelCase spelling: a property that only points at its snake_case sibling."""
    return (
        isinstance(subschema, Mapping)
        and set(subschema) == {"$ref"}
        and "/properties/" in subschema["$ref"]
    )


# Keywords about the value itself, whose messages end with what was found instead.
_VALUE_KEYWORDS = frozenset(
    {"type", "enum", "const", "pattern", "minLength", "maxLength", "minimum", "maximum",
     "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf"}
)  # fmt: skip


def _message(error: Any) -> str:
    """What is expected, for one failing keyword (custom ``errorMessage`` first)."""
    from jsonschema.exceptions import best_match

    schema = error.schema if isinstance(error.schema, Mapping) else {}
    validator, expected = error.validator, error.validator_value
    instance = error.instance
    got = f"; got {shown_value(instance)}" if validator in _VALUE_KEYWORDS else ""
    if validator == "pattern" and schema.get("patternErrorMessage"):
        return f"{schema['patternErrorMessage']}{got}"
    if schema.get("errorMessage"):
        hint = ""
        if validator == "enum":
            hint = _suggest(instance, [e for e in expected if isinstance(e, str)])
        if validator in ("anyOf", "oneOf") and isinstance(instance, Mapping):
            got = ""  # the message is about the mapping's keys
        return f"{schema['errorMessage']}{got}" + (f".{hint}" if hint else "")
    if error.context:
        # No alternative has the value's type: say what the non-empty ones expect.
        typed = [e for e in error.context if e.validator == "type" and e.validator_value != "null"]
        return _message(typed[0] if len(typed) == 1 else best_match(error.context))
    if validator == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in types if t != "null")
        title = schema.get("title")
        if title and "(" not in title:
            return f"expected {title} ({wanted}){got}"
        return f"expected {title or wanted}{got}"
    if validator == "enum":
        choices = [e for e in expected if e is not None]
        return (
            f"expected one of {', '.join(map(str, choices))}{got}."
            f"{_suggest(instance, [str(c) for c in choices])}"
        ).rstrip(".")
    if validator == "const":
        return f"expected {expected!r}{got}"
    if validator == "pattern":
        return f"expected text matching {expected}{got}"
    if validator == "minItems":
        return f"expected a list of at least {expected} item(s)"
    if validator == "maxItems":
        return f"expected at most {expected} items; got {len(instance)}"
    if validator == "minLength":
        return f"expected at least {expected} character(s)"
    if validator == "maxLength":
        return f"expected at most {expected} characters; got {len(instance)}"
    if validator == "minimum":
        return f"expected a number of at least {expected}{got}"
    if validator == "maximum":
        return f"expected a number of at most {expected}{got}"
    if validator == "exclusiveMinimum":
        return f"expected a number greater than {expected}{got}"
    if validator == "exclusiveMaximum":
        return f"expected a number less than {expected}{got}"
    return str(error.message)


__all__ = [
    "SCHEMA_NAMES",
    "Document",
    "check_document",
    "format_path",
    "read_document",
    "schema_text",
    "shipped_schema",
    "shown_value",
]
