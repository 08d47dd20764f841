"""``crm-templates lint``: check templates against the schema without rendering them (SPEC §7).

Every template is parsed (never rendered) and its syntax tree walked for CRM calls — globals
under either spelling, CRM-looking names that are no CRM function, and ``crm_*`` filters.
Constant arguments are checked: option names against the function table (aliases included),
entity slugs and field keys against the schema file (plus entities the templates declare
themselves with ``EnsureCrmEntity``), pipeline and stage slugs of the move functions.
Dynamic values (variables, expressions) are left alone: lint reports only what is certain.

Jinja2 is imported when the command runs, so ``crm_templates.cli`` stays free of it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .functions import ALIASES, BY_NAME, FUNCTIONS, FunctionSpec
from .model import Entity
from .presets import PRESETS, apply_preset
from .schema import parse_fields, parse_pipelines

if TYPE_CHECKING:
    from jinja2 import nodes

TEMPLATE_SUFFIXES = (".html", ".jinja", ".j2", ".txt")
_CRM_LOOKING = re.compile("crm", re.IGNORECASE)

# Filters that read a slug's data, and the function whose options their keywords are.
_FILTER_FUNCTIONS = {
    "crm_field": "GetCrmField",
    "crm_fields": "GetCrmFields",
    "crm_entries": "GetCrmEntries",
    "crm_field_values": "GetCrmFieldValues",
}
_KEY_FILTERS = {"crm_field", "crm_field_values", "crm_label", "crm_render", "crm_text"}


@dataclass(frozen=True, order=True)
class Problem:
    """One finding, printed as ``file:line: message``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class EntitySchema:
    """What lint knows of one entity."""

    keys: set[str] = field(default_factory=set)
    pipelines: set[str] = field(default_factory=set)
    stages: set[str] = field(default_factory=set)


Schema = dict[str, EntitySchema]


def schema_from_documents(documents: Iterable[Mapping[str, Any]]) -> Schema:
    """Known entities from schema-file documents (``slug``, ``fields``, ``pipelines``, and a
    ``preset``'s fields and pipeline)."""
    schema: Schema = {}
    for doc in documents:
        doc = apply_preset(doc)
        entity = schema.setdefault(str(doc.get("slug")), EntitySchema())
        entity.keys.update(f.key for f in parse_fields(doc.get("fields")))
        for pipeline in parse_pipelines(doc.get("pipelines")):
            entity.pipelines.add(pipeline.slug)
            entity.stages.update(s.slug for s in pipeline.stages)
    return schema


def _hint(word: str, choices: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def _const(node: Any) -> Any:
    """The value of a constant node (strings, numbers, lists/dicts of constants), else None."""
    from jinja2 import nodes

    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        items = [_const(i) for i in node.items]
        return None if any(i is None for i in items) else items
    if isinstance(node, nodes.Dict):
        pairs = [(_const(p.key), _const(p.value)) for p in node.items]
        if any(k is None for k, _ in pairs):
            return None
        return {k: v for k, v in pairs}
    return None


@dataclass
class _Options:
    """The options of one call as far as they are constant."""

    values: dict[str, Any]  # raw option name -> constant value, or None when dynamic
    complete: bool  # every option name is known (no **kwargs, no non-literal mapping)


def _call_options(node: nodes.Call | nodes.Filter, skip_args: int = 0) -> _Options:
    from jinja2 import nodes

    values: dict[str, Any] = {}
    complete = node.dyn_args is None and node.dyn_kwargs is None
    for arg in node.args[skip_args:]:
        if isinstance(arg, nodes.Dict):
            for pair in arg.items:
                key = _const(pair.key)
                if isinstance(key, str):
                    values[key] = _const(pair.value)
                else:
                    complete = False
        else:
            complete = False
    for kw in node.kwargs:
        if isinstance(kw, nodes.Keyword):
            values[kw.key] = _const(kw.value)
    return _Options(values, complete)


class _Linter:
    def __init__(self, schema: Schema | None) -> None:
        self.schema = schema
        self.problems: list[Problem] = []
        self.path = ""

    def report(self, node: Any, message: str) -> None:
        self.problems.append(Problem(self.path, node.lineno, message))

    # --- schema checks ------------------------------------------------------------------

    def entity(self, node: Any, slug: Any, allow_star: bool = False) -> EntitySchema | None:
        if self.schema is None or not isinstance(slug, str) or (allow_star and slug == "*"):
            return None
        found = self.schema.get(slug)
        if found is None:
            self.report(node, f"unknown entity slug {slug!r}{_hint(slug, self.schema)}")
        return found

    def keys(self, node: Any, entity: EntitySchema | None, slug: Any, keys: Any) -> None:
        if entity is None:
            return
        for key in keys if isinstance(keys, list) else [keys]:
            if isinstance(key, str) and key not in entity.keys:
                self.report(node, f"entity {slug!r} has no field {key!r}{_hint(key, entity.keys)}")

    # --- calls --------------------------------------------------------------------------

    def call(self, node: nodes.Call, spec: FunctionSpec, name: str) -> None:
        if len(node.args) > 1:
            self.report(node, f"{name} takes one options mapping and/or keyword arguments")
        opts = _call_options(node)
        self.options(node, spec, name, opts)

    def options(self, node: Any, spec: FunctionSpec, name: str, opts: _Options) -> None:
        canonical: dict[str, Any] = {}
        for raw, value in opts.values.items():
            key = ALIASES.get(raw, raw)
            if key not in spec.options:
                self.report(
                    node,
                    f"{name}: unknown option {raw!r}{_hint(raw, spec.options)} "
                    f"(accepted: {', '.join(spec.options)})",
                )
                continue
            canonical[key] = value
        if opts.complete:
            missing = [r for r in spec.required if r not in canonical]
            if missing:
                self.report(node, f"{name}: missing required option(s) {', '.join(missing)}")
        if spec.name == "EnsureCrmEntity":
            preset = canonical.get("preset")
            if isinstance(preset, str) and preset not in PRESETS:
                self.report(
                    node,
                    f"{name}: unknown preset {preset!r}{_hint(preset, PRESETS)} "
                    f"(presets: {', '.join(PRESETS)})",
                )
            return
        self.schema_refs(node, spec, canonical)

    def schema_refs(self, node: Any, spec: FunctionSpec, o: Mapping[str, Any]) -> None:
        if spec.name == "MoveCrmToEntity":
            src_slug, dst_slug = o.get("fromSlug"), o.get("toSlug")
            src = self.entity(node, src_slug)
            dst = self.entity(node, dst_slug)
            field_map = o.get("fieldMap")
            if isinstance(field_map, dict):
                self.keys(node, src, str(src_slug), list(field_map))
                self.keys(node, dst, str(dst_slug), list(field_map.values()))
            return
        slug = o.get("slug")
        entity = self.entity(node, slug, allow_star=spec.name == "ReassignCrmReference")
        if entity is None:
            return
        for option in ("fieldKey", "fieldKeys", "relationKey"):
            if option in o:
                self.keys(node, entity, slug, o[option])
        fields = o.get("fields")
        if isinstance(fields, dict):
            self.keys(node, entity, slug, list(fields))
        elif isinstance(fields, list):
            self.keys(
                node,
                entity,
                slug,
                [f.get("fieldKey", f.get("field_key")) for f in fields if isinstance(f, dict)],
            )
        values = o.get("values")
        if isinstance(values, dict):
            self.keys(node, entity, slug, list(values))
        for option, known, what in (
            ("pipelineSlug", entity.pipelines, "pipeline"),
            ("stageSlug", entity.stages, "stage"),
        ):
            value = o.get(option)
            if isinstance(value, str) and value not in known:
                self.report(node, f"entity {slug!r} has no {what} {value!r}{_hint(value, known)}")

    # --- filters ------------------------------------------------------------------------

    def filter(self, node: nodes.Filter) -> None:
        from .extension import FILTERS

        name = node.name
        if name not in FILTERS:
            self.report(node, f"unknown filter {name!r}{_hint(name, FILTERS)}")
            return
        subject = _const(node.node) if node.node is not None else None
        first = _const(node.args[0]) if node.args else None
        function = _FILTER_FUNCTIONS.get(name)
        if function is not None:
            spec = FUNCTIONS[function]
            # The slug and key come positionally; only keyword options can be checked here.
            opts = _call_options(node, len(node.args))
            opts.complete = False
            self.options(node, spec, f"{name} ({function})", opts)
        if name == "crm_stage":  # {{ stage | crm_stage('entity-slug') }}
            self.entity(node, first)
        elif not isinstance(subject, str):
            return
        elif name == "crm_entries":
            self.entity(node, subject)
        elif (name == "crm_fields" and isinstance(first, list)) or (
            name in _KEY_FILTERS and isinstance(first, str)
        ):
            self.keys(node, self.entity(node, subject), subject, first)

    # --- a template ---------------------------------------------------------------------

    def template(self, path: str, ast: nodes.Template) -> None:
        from jinja2 import nodes

        self.path = path
        defined = _defined_names(ast)
        for call in ast.find_all(nodes.Call):
            if not isinstance(call.node, nodes.Name) or call.node.name in defined:
                continue
            name = call.node.name
            spec = BY_NAME.get(name)
            if spec is not None:
                self.call(call, spec, name)
            elif _CRM_LOOKING.search(name):
                self.report(call, f"unknown CRM function {name!r}{_hint(name, BY_NAME)}")
        for flt in ast.find_all(nodes.Filter):
            if flt.name.startswith("crm_"):
                self.filter(flt)


def _defined_names(ast: nodes.Template) -> set[str]:
    """Names the template defines itself (macros, set/for targets, imports)."""
    from jinja2 import nodes

    names = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    names.update(m.name for m in ast.find_all(nodes.Macro))
    names.update(i.target for i in ast.find_all(nodes.Import))
    for imp in ast.find_all(nodes.FromImport):
        names.update(n if isinstance(n, str) else n[1] for n in imp.names)
    return names


def _declared_entities(asts: Iterable[nodes.Template]) -> Iterator[dict[str, Any]]:
    """Constant EnsureCrmEntity calls: the templates declare these entities themselves."""
    from jinja2 import nodes

    for ast in asts:
        for call in ast.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and BY_NAME.get(call.node.name) is not None:
                if BY_NAME[call.node.name].name != "EnsureCrmEntity":
                    continue
                values = {ALIASES.get(k, k): v for k, v in _call_options(call).values.items()}
                if isinstance(values.get("slug"), str):
                    yield values


def template_files(root: Path) -> list[Path]:
    """The templates under ``root`` (or ``root`` itself), sorted."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in TEMPLATE_SUFFIXES)


def _parser() -> Any:
    """A Jinja environment that only parses: the extensions templates commonly use, so that
    their tags parse."""
    from jinja2 import Environment

    from .extension import CrmExtension

    return Environment(
        extensions=[CrmExtension, "jinja2.ext.i18n", "jinja2.ext.loopcontrols", "jinja2.ext.debug"]
    )


def schema_from_entities(entities: Iterable[Entity]) -> Schema:
    """Known entities from the store's `Entity` records (fields, pipelines and stages): what a
    running site knows, including entities created at runtime (the admin playground)."""
    schema: Schema = {}
    for entity in entities:
        known = schema.setdefault(entity.slug, EntitySchema())
        known.keys.update(f.key for f in entity.fields)
        for pipeline in entity.pipelines:
            known.pipelines.add(pipeline.slug)
            known.stages.update(s.slug for s in pipeline.stages)
    return schema


def lint_source(source: str, schema: Schema | None = None, name: str = "<source>") -> list[Problem]:
    """Problems in one template's ``source`` (the admin playground's typed template), sorted by
    line; each `Problem` has ``path`` = ``name`` and a 1-based ``line``. The same checks as
    `lint_templates`; ``schema`` (e.g. `schema_from_entities`) enables the slug and key checks,
    and entities the source declares with ``EnsureCrmEntity`` count as known."""
    from jinja2.exceptions import TemplateSyntaxError

    try:
        ast = _parser().parse(source, name=name, filename=name)
    except TemplateSyntaxError as exc:
        return [Problem(name, exc.lineno, f"syntax error: {exc.message}")]
    if schema is not None:
        schema = {slug: known for slug, known in schema.items()}
        for slug, known in schema_from_documents(_declared_documents([ast])).items():
            schema.setdefault(slug, known)
    linter = _Linter(schema)
    linter.template(name, ast)
    return sorted(linter.problems)


def _declared_documents(asts: Iterable[nodes.Template]) -> list[dict[str, Any]]:
    """Schema documents for the entities the templates declare with ``EnsureCrmEntity``.

    Fields declared in a template's EnsureCrmEntity count; bad literals are the runtime's
    business, not lint's.
    """
    docs = []
    for declared in _declared_entities(asts):
        fields = declared.get("fields")
        preset = declared.get("preset")
        docs.append(
            {
                "slug": declared["slug"],
                "fields": [f for f in fields if isinstance(f, dict) and "key" in f]
                if isinstance(fields, list)
                else None,
                # An unknown preset is reported where it is called, not here.
                "preset": preset if isinstance(preset, str) and preset in PRESETS else None,
            }
        )
    return docs


def lint_templates(
    root: str | Path, schema_documents: Iterable[Mapping[str, Any]] | None = None
) -> tuple[list[Problem], int]:
    """Problems found in the templates under ``root``, and how many templates were checked.

    Without schema documents only function names, filters and option names are checked.
    """
    from jinja2.exceptions import TemplateSyntaxError

    root = Path(root)
    env = _parser()
    problems: list[Problem] = []
    parsed: list[tuple[str, nodes.Template]] = []
    files = template_files(root)
    for path in files:
        shown = str(path)
        try:
            source = path.read_text(encoding="utf-8")
            parsed.append((shown, env.parse(source, name=path.name, filename=shown)))
        except TemplateSyntaxError as exc:
            problems.append(Problem(shown, exc.lineno, f"syntax error: {exc.message}"))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(shown, 1, f"cannot read: {exc}"))
    schema = None
    if schema_documents is not None:
        docs = [*schema_documents, *_declared_documents(ast for _, ast in parsed)]
        schema = schema_from_documents(docs)
    linter = _Linter(schema)
    for shown, ast in parsed:
        linter.template(shown, ast)
    return sorted(problems + linter.problems), len(files)


@click.command(short_help="Check templates for unknown CRM functions and options.")
@click.argument("template_dir", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--schema",
    "schema_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Schema file (YAML/JSON, like crm.yaml) to check slugs and field keys against.",
)
def lint(template_dir: Path, schema_file: str | None) -> None:
    """Check the templates in TEMPLATE_DIR for unknown CRM functions, options, slugs and keys.

    Prints one ``file:line: message`` per problem; exits with status 1 when there is any.
    """
    from .loading import load_schema_file

    documents = load_schema_file(schema_file) if schema_file else None
    problems, checked = lint_templates(template_dir, documents)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        click.echo(f"{len(problems)} problem(s) in {checked} template(s)", err=True)
        raise SystemExit(1)
    click.echo(f"{checked} template(s) OK", err=True)


__all__ = [
    "Problem",
    "Schema",
    "lint",
    "lint_source",
    "lint_templates",
    "schema_from_documents",
    "schema_from_entities",
    "template_files",
]
