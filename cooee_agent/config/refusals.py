"""msgspec's refusals of configuration values, said in the configuration's words.

msgspec says ``Expected `float` >= 1.0 - at `$.heartbeat.interval```; a person reads
``heartbeat.interval: must be in [1, 3600], got 0``. The bounds come from the type's own Meta.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec.inspect as types

# Where msgspec found a fault: the keys and list indexes from the top of the value.
Steps = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Range:
    """The numbers a key allows: ``low`` to ``high``, ``low`` itself excluded when ``low_open``."""

    low: float
    high: float
    low_open: bool = False

    @classmethod
    def of(cls, kind: Any) -> Range:
        """The bounds msgspec checks for ``kind``: an annotated number type, or its type_info."""
        info = kind if isinstance(kind, types.Type) else types.type_info(kind)
        assert isinstance(info, types.FloatType | types.IntType), info
        low = info.ge if info.gt is None else info.gt
        assert low is not None and info.le is not None, info
        return cls(low, info.le, low_open=info.gt is not None)

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    @property
    def words(self) -> str:
        """The range for a person: "1 to 3600"."""
        return f"{self.low:g} to {self.high:g}"


def kind(value: Any) -> str:
    """What a TOML value is, as a refusal names it."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


_WHERE = re.compile(r"(?P<said>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_WRONG_TYPE = re.compile(r"Expected `[^`]+`, got `[^`]+`")
_OUT_OF_RANGE = re.compile(
    r"Expected `(?:int|float)` [<>]=? \S+|Number out of range|Integer value out of range"
)
_TOO_LONG = re.compile(r"Expected `str` of length <= \d+")


def split(message: str) -> tuple[str, Steps]:
    """A msgspec refusal as (what it said, where: the steps from the top of the value)."""
    match = _WHERE.fullmatch(message)
    assert match is not None  # the pattern matches any text
    path = match["path"] or ""
    steps = tuple(int(index) if index else key for key, index in _STEP.findall(path))
    return match["said"], steps


def explain(said: str, steps: Steps, value: Any, target: Any) -> str:
    """msgspec's refusal ``said`` at ``steps`` of ``value`` (decoded as ``target``) as the rule
    broken, prefixed by the item's index when the fault is in a list."""
    found = _value_at(value, steps)
    info = _info_at(types.type_info(target), steps)
    if _WRONG_TYPE.fullmatch(said):
        names = [step for step in steps if isinstance(step, str)]
        rule = f"must be {_wanted(info, names[-1] if names else '')}, got {kind(found)}"
    elif _OUT_OF_RANGE.fullmatch(said):
        rule = f"must be in {Range.of(info)}, got {found!r}"
    elif _TOO_LONG.fullmatch(said) and isinstance(info, types.StrType):
        rule = f"must be at most {info.max_length} characters long"
    else:
        rule = said  # a rule of ours, raised while decoding (checks.decode_path): our words already
    index = steps[-1] if steps and isinstance(steps[-1], int) else None
    return rule if index is None else f"item {index}: {rule}"


def _wanted(info: types.Type, name: str) -> str:
    if isinstance(info, types.StructType):
        return f"a table [{name}]"
    if isinstance(info, types.VarTupleType):
        return "a string or a list of strings"  # every list in the file is of strings
    words: dict[type[types.Type], str] = {
        types.BoolType: "true or false",
        types.IntType: "an integer",
        types.FloatType: "a number",
        types.StrType: "a string",
        types.CustomType: "a string",  # a Path, written as a string
    }
    return words.get(type(info), str(info))


def _value_at(value: Any, steps: Steps) -> Any:
    for step in steps:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _info_at(info: types.Type, steps: Steps) -> types.Type:
    """The type at ``steps`` in ``info``, an optional value's type without its None (TOML has
    no null)."""
    info = _present(info)
    for step in steps:
        if isinstance(info, types.StructType):
            info = next((field.type for field in info.fields if field.name == step), info)
        elif isinstance(info, types.VarTupleType):
            info = info.item_type
        info = _present(info)
    return info


def _present(info: types.Type) -> types.Type:
    if isinstance(info, types.UnionType):
        others = [member for member in info.types if not isinstance(member, types.NoneType)]
        if len(others) == 1:
            return others[0]
    return info
