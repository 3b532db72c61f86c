"""A tiny strict schema checker for wire JSON: exact keys, exact types, bounded sizes.

Every failure raises RejectedError("schema", ...) naming the JSON path, so a refused message
says precisely what was wrong with it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cooee_agent.protocol.errors import RejectedError

MAX_SAFE_INT = 2**53 - 1  # JSON numbers beyond this lose precision in JavaScript readers
# Characters no record string may hold: controls, format characters, surrogates, private use,
# unassigned, and the line/paragraph separators that JSON encoders disagree on escaping.
_FORBIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def fail(path: str, message: str) -> RejectedError:
    return RejectedError("schema", f"{path or 'record'}: {message}")


@dataclass(frozen=True, slots=True)
class Str:
    max_length: int = 255
    pattern: re.Pattern[str] | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[str], str | None] | None = None  # returns a complaint, or None
    allow_empty: bool = False

    def validate(self, value: Any, path: str) -> None:
        if not isinstance(value, str):
            raise fail(path, f"must be a string, got {_type_name(value)}")
        if len(value) > self.max_length:
            raise fail(path, f"is {len(value)} characters long, at most {self.max_length}")
        if not value and not self.allow_empty:
            raise fail(path, "is empty")
        for char in value:
            if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
                raise fail(path, f"holds the forbidden character U+{ord(char):04X}")
        if self.choices and value not in self.choices:
            raise fail(path, f"is {value!r}, expected one of {', '.join(self.choices)}")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise fail(path, f"{value!r} does not match {self.pattern.pattern}")
        if self.check is not None:
            complaint = self.check(value)
            if complaint:
                raise fail(path, complaint)


@dataclass(frozen=True, slots=True)
class Int:
    minimum: int = 0
    maximum: int = MAX_SAFE_INT

    def validate(self, value: Any, path: str) -> None:
        # bool is an int in Python and a distinct type on the wire.
        if not isinstance(value, int) or isinstance(value, bool):
            raise fail(path, f"must be an integer, got {_type_name(value)}")
        if not self.minimum <= value <= self.maximum:
            raise fail(path, f"{value} is out of range {self.minimum}..{self.maximum}")


@dataclass(frozen=True, slots=True)
class Const:
    value: Any

    def validate(self, value: Any, path: str) -> None:
        if type(value) is not type(self.value) or value != self.value:
            raise fail(path, f"must be {self.value!r}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Opt:
    """The key must be present; its value may be null."""

    inner: Spec

    def validate(self, value: Any, path: str) -> None:
        if value is not None:
            self.inner.validate(value, path)


@dataclass(frozen=True, slots=True)
class Arr:
    item: Spec
    max_items: int
    min_items: int = 0

    def validate(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise fail(path, f"must be an array, got {_type_name(value)}")
        if not self.min_items <= len(value) <= self.max_items:
            raise fail(path, f"has {len(value)} items, expected {self.min_items}..{self.max_items}")
        for index, item in enumerate(value):
            self.item.validate(item, f"{path}[{index}]")


@dataclass(frozen=True, slots=True)
class Obj:
    fields: dict[str, Spec] = field(default_factory=dict)

    def validate(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise fail(path, f"must be an object, got {_type_name(value)}")
        missing = sorted(set(self.fields) - set(value))
        if missing:
            raise fail(path, f"misses the field(s) {', '.join(missing)}")
        extra = sorted(set(value) - set(self.fields))
        if extra:
            raise fail(path, f"has unknown field(s) {', '.join(map(repr, extra))}")
        for name, spec in self.fields.items():
            spec.validate(value[name], f"{path}.{name}" if path else name)


Spec = Str | Int | Const | Opt | Arr | Obj


def _type_name(value: Any) -> str:
    return {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise fail("", f"has the key {key!r} twice")
        result[key] = value
    return result


def _no_float(text: str) -> Any:
    raise fail("", f"holds the non-integer number {text}; the protocol uses integers only")


def _no_constant(text: str) -> Any:
    raise fail("", f"holds {text}, which is not JSON")


def loads(data: bytes | str, what: str) -> Any:
    """Parse strict JSON: UTF-8, no duplicate keys, no floats, no NaN/Infinity."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise fail(what, f"is not UTF-8 ({error.reason} at byte {error.start})") from error
    try:
        return json.loads(
            data,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as error:
        raise fail(what, f"is not JSON: {error.msg} at line {error.lineno}") from error
    except RecursionError as error:
        raise fail(what, "is nested too deeply") from error


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, raw UTF-8 (not \\u escapes), integers only."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
