"""Strict wire JSON and typed records: parse, check, convert, and say precisely what was wrong.

The record types are msgspec Structs (``records.py``, ``envelope.py``): exact keys, exact types,
bounded sizes. msgspec reports a refusal in its own words; :func:`convert` turns that into the
protocol's (the JSON path, then the rule broken, with the offending value where it helps), and
every failure raises RejectedError("schema", ...).
"""

from __future__ import annotations

import json
import re
import typing
import unicodedata
from typing import Any, Literal, TypeVar

import msgspec
import msgspec.json

from cooee_agent.protocol.errors import RejectedError

MAX_SAFE_INT = 2**53 - 1  # JSON numbers beyond this lose precision in JavaScript readers
# Characters no record string may hold: controls, format characters, surrogates, private use,
# unassigned, and the line/paragraph separators that JSON encoders disagree on escaping.
_FORBIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))

T = TypeVar("T")


def fail(path: str, message: str) -> RejectedError:
    return RejectedError("schema", f"{path or 'record'}: {message}")


def text(max_length: int = 255, pattern: str | None = None, *, min_length: int = 1) -> msgspec.Meta:
    """The constraint of a record string; ``pattern`` must match the whole string."""
    full = None if pattern is None else f"^(?:{pattern})\\Z"
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=full)


def integer(minimum: int = 0, maximum: int = MAX_SAFE_INT) -> msgspec.Meta:
    return msgspec.Meta(ge=minimum, le=maximum)


def check_characters(value: Any, path: str = "") -> None:
    """Refuse a forbidden character in any string of a decoded JSON value."""
    # The fast answer for the usual record: its JSON text has no escapes (so no control
    # characters) and is all printable (so no other forbidden category).
    try:
        encoded = _CANONICAL.encode(value).decode("utf-8")
    except (TypeError, UnicodeError):
        encoded = ""
    if encoded and "\\" not in encoded and encoded.isprintable():
        return
    _scan_characters(value, path)


def _scan_characters(value: Any, path: str) -> None:
    if isinstance(value, str):
        # isprintable() is False for every forbidden category, so most strings skip the scan.
        if not value.isprintable():
            for char in value:
                if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
                    raise fail(path, f"holds the forbidden character U+{ord(char):04X}")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(item, int):
                _scan_characters(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _scan_characters(item, f"{path}[{index}]")


def convert(value: Any, kind: type[T], what: str = "") -> T:
    """``value`` (decoded JSON) as a ``kind`` Struct, or RejectedError naming the field and rule."""
    check_characters(value, what)
    try:
        return msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError as error:
        raise _explain(str(error), value, kind, what) from error


_WHERE = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_TYPE_WORDS = {
    "int": "an integer",
    "str": "a string",
    "array": "an array",
    "object": "an object",
    "null": "null",
    "bool": "boolean",
    "float": "number",
}


def _explain(message: str, value: Any, kind: type[Any], prefix: str) -> RejectedError:
    match = _WHERE.match(message)
    assert match is not None  # the pattern matches any text
    raw_path = match["path"] or ""
    path = _join(prefix, raw_path.removeprefix("."))
    said = match["message"]
    found = _value_at(value, raw_path)
    rules: list[tuple[str, Any]] = [
        (r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`", _wrong_type),
        (r"Expected `int` (?P<op>[<>]=) (?P<bound>-?\d+)", _out_of_range),
        (r"Expected `str` of length (?P<op>[<>]=) (?P<bound>\d+)", _bad_length),
        (r"Expected `array` of length (?P<op>[<>]=) (?P<bound>\d+)", _bad_count),
        (r"Expected `str` matching regex '(?P<pattern>.*)'", _no_match),
        (r"Object missing required field `(?P<name>[^`]+)`", _missing),
        (r"Object contains unknown field `(?P<name>[^`]+)`", _unknown),
        (r"Invalid enum value (?P<got>.*)", _not_a_choice),
    ]
    for pattern, explain in rules:
        rule = re.fullmatch(pattern, said, re.DOTALL)
        if rule is not None:
            return fail(path, explain(rule, found, _type_at(kind, raw_path)))
    # A __post_init__ check (records.FieldError): "field: what is wrong", in the protocol's words.
    field = re.fullmatch(r"(?P<field>[a-z_]+): (?P<rest>.*)", said, re.DOTALL)
    if field is not None:
        return fail(_join(path, field["field"]), field["rest"])
    return fail(path, said)


def _wrong_type(rule: re.Match[str], found: Any, _: Any) -> str:
    wanted = " or ".join(_TYPE_WORDS.get(name, name) for name in rule["want"].split(" | "))
    return f"must be {wanted}, got {_TYPE_WORDS.get(rule['got'], rule['got']).split()[-1]}"


def _out_of_range(rule: re.Match[str], found: Any, kind: Any) -> str:
    low, high = _bounds(kind, "ge", "le")
    return f"{found} is out of range {low}..{high}"


def _bad_length(rule: re.Match[str], found: Any, _: Any) -> str:
    if rule["op"] == ">=" and found == "":
        return "is empty"
    size = len(found) if isinstance(found, str) else "?"
    limit = "at most" if rule["op"] == "<=" else "at least"
    return f"is {size} characters long, {limit} {rule['bound']}"


def _bad_count(rule: re.Match[str], found: Any, kind: Any) -> str:
    low, high = _bounds(kind, "min_length", "max_length")
    size = len(found) if isinstance(found, list) else "?"
    return f"has {size} items, expected {low}..{high}"


def _no_match(rule: re.Match[str], found: Any, _: Any) -> str:
    shown = rule["pattern"].replace("\\\\", "\\").removeprefix("^(?:").removesuffix(")\\Z")
    return f"{found!r} does not match {shown}"


def _missing(rule: re.Match[str], found: Any, _: Any) -> str:
    return f"misses the field(s) {rule['name']}"


def _unknown(rule: re.Match[str], found: Any, _: Any) -> str:
    return f"has unknown field(s) {rule['name']!r}"


def _not_a_choice(rule: re.Match[str], found: Any, kind: Any) -> str:
    allowed = typing.get_args(_strip(kind))
    choices = [str(choice) for choice in allowed]
    if len(choices) == 1:
        return f"must be {allowed[0]!r}, got {found!r}"
    return f"is {found!r}, expected one of {', '.join(choices)}"


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return f"{prefix}{path}" if path.startswith("[") or not path else f"{prefix}.{path}"


_STEP = re.compile(r"\.(?P<key>[^.\[]+)|\[(?P<index>\d+)\]")


def _steps(path: str) -> list[str | int]:
    return [
        int(step["index"]) if step["index"] is not None else step["key"]
        for step in _STEP.finditer(path)
    ]


def _value_at(value: Any, path: str) -> Any:
    for step in _steps(path):
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _strip(kind: Any) -> Any:
    """The type inside ``Annotated[...]`` and ``X | None``."""
    while True:
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
            continue
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if (
            typing.get_origin(kind) is not Literal
            and len(args) == 1
            and type(None) in (typing.get_args(kind))
        ):
            kind = args[0]
            continue
        return kind


def _type_at(kind: Any, path: str) -> Any:
    """The declared (annotated) type of the field at ``path`` inside Struct type ``kind``."""
    for step in _steps(path):
        bare = _strip(kind)
        if isinstance(step, int):
            kind = typing.get_args(bare)[0] if typing.get_args(bare) else Any
        elif isinstance(bare, type) and issubclass(bare, msgspec.Struct):
            kind = typing.get_type_hints(bare, include_extras=True).get(step, Any)
        else:
            return Any
    return kind


def _bounds(kind: Any, low_name: str, high_name: str) -> tuple[Any, Any]:
    low: Any = 0
    high: Any = "…"
    for kind_part in [kind, *typing.get_args(kind)]:
        if typing.get_origin(kind_part) is typing.Annotated:
            for meta in typing.get_args(kind_part)[1:]:
                if isinstance(meta, msgspec.Meta):
                    low = getattr(meta, low_name) if getattr(meta, low_name) is not None else low
                    high = (
                        getattr(meta, high_name) if getattr(meta, high_name) is not None else high
                    )
    return low, high


class _Refusal(Exception):
    """Raised by the strict parser's hooks; ``loads`` names what was being parsed."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refusal(f"has the key {key!r} twice")
            seen.add(key)
    return result


def _no_float(text: str) -> Any:
    raise _Refusal(f"holds the non-integer number {text}; the protocol uses integers only")


def _bounded_int(text: str) -> int:
    digits = text.lstrip("-")
    # Checked on the text, before any conversion: Python refuses to convert more than 4300
    # digits at all, and no protocol integer has more digits than the largest safe one.
    if len(digits) > len(str(MAX_SAFE_INT)):
        shown = text if len(text) <= 24 else f"{text[:20]}… ({len(digits)} digits)"
        raise _Refusal(f"holds the integer {shown}, beyond the protocol's ±{MAX_SAFE_INT}")
    return int(text)


def _no_constant(text: str) -> Any:
    raise _Refusal(f"holds {text}, which is not JSON")


def _refuse_float(text: str) -> Any:
    raise ValueError(text)


_FAST = msgspec.json.Decoder(float_hook=_refuse_float)
# A run of more digits than the largest safe integer has, found by mapping every digit to "0"
# and everything else to " " and searching for the run: a regex over a 13 KB enrolment took
# 0.17 ms, this 0.01 ms.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * (len(str(MAX_SAFE_INT)) + 1)


def loads(data: bytes | str, what: str) -> Any:
    """Parse strict JSON: UTF-8, no duplicate keys, no floats, no NaN/Infinity."""
    if isinstance(data, bytes):
        # The usual message is canonical JSON (every implementation sends what it signs): a fast
        # decode that re-encodes to the very same bytes had no duplicate key, no float and no
        # other laxity to refuse. Anything else takes the strict parser and its precise refusal.
        try:
            value = _FAST.decode(data)
        except (msgspec.MsgspecError, UnicodeError, ValueError, RecursionError):
            pass
        else:
            # A run of more digits than the largest safe integer has may be an integer out of
            # range: the strict parser decides.
            if _CANONICAL.encode(value) == data and _LONG_RUN not in data.translate(
                _DIGITS_AS_ZERO
            ):
                return value
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise fail(what, f"is not UTF-8 ({error.reason} at byte {error.start})") from error
    try:
        return json.loads(
            data,
            object_pairs_hook=_no_duplicates,
            parse_int=_bounded_int,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except _Refusal as refusal:
        raise fail(what, str(refusal)) from None
    except json.JSONDecodeError as error:
        raise fail(what, f"is not JSON: {error.msg} at line {error.lineno}") from error
    except RecursionError as error:
        raise fail(what, "is nested too deeply") from error


_CANONICAL = msgspec.json.Encoder(order="sorted")


def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace, raw UTF-8 (not \\u escapes), integers only.

    Byte for byte ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode()`` (a property test holds the two together), at a tenth of
    its cost: the Leader computes it over every record it verifies.
    """
    return _CANONICAL.encode(value)
