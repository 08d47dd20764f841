"""A normalised view of a field definition, whatever shape the caller passes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


def attr(source: Any, *names: str) -> Any:
    """The first of ``names`` present on a mapping or an object, else None.

    Field definitions arrive as the core's frozen dataclasses, as dicts straight from a
    template, or in the seed's camelCase, so every lookup accepts all of them.
    """
    for name in names:
        value = source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class Choice:
    """One select/multiselect option."""

    value: str
    label: str


def _choices(options: Any) -> tuple[Choice, ...]:
    if options is None or isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
        return ()
    choices = []
    for option in options:
        if isinstance(option, str):
            choices.append(Choice(option, option))
            continue
        value = attr(option, "value")
        if value is None and not isinstance(option, Mapping) and not hasattr(option, "label"):
            value = option  # a bare number or other scalar option
        label = attr(option, "label")
        text = "" if value is None else str(value)
        choices.append(Choice(text, text if label is None else str(label)))
    return tuple(choices)


@dataclass(frozen=True)
class FieldInfo:
    """What a renderer needs from a field definition; ``source`` is the definition itself."""

    type: str
    key: str = ""
    label: str = ""
    choices: tuple[Choice, ...] = ()
    target_entity: str = ""
    source: Any = None

    @classmethod
    def of(cls, field: Any) -> FieldInfo:
        """Normalise a mapping or an object with attributes (``type`` is read, not checked)."""
        if isinstance(field, FieldInfo):
            return field
        key = attr(field, "key")
        label = attr(field, "label")
        return cls(
            type=attr(field, "type"),
            key="" if key is None else str(key),
            label=str(label if label is not None else key if key is not None else ""),
            choices=_choices(attr(field, "options")),
            target_entity=str(attr(field, "target_entity", "targetEntity") or ""),
            source=field,
        )

    def label_for(self, value: Any) -> str:
        """The option label of ``value``; an unknown value is shown as itself."""
        text = str(value)
        for choice in self.choices:
            if choice.value == text:
                return choice.label
        return text
