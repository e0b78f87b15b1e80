"""Reading YAML files: a missing file, a syntax error, a key given twice or a document whose
aliases expand without bound is one readable :class:`~splitimpera.errors.UserError`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

# The most values a YAML document may hold once its aliases are expanded: far above any
# scenario, sweep or profile, far below what a "billion laughs" document (aliases of aliases)
# expands to, which would exhaust the memory of whatever walks it.
MAX_YAML_VALUES = 1_000_000


class _TooLarge(Exception):
    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _expanded_size(node, memo: dict, active: set) -> int:
    """Values in ``node`` with every alias expanded (aliases are shared nodes: counted each
    time they are used); :class:`_TooLarge` past :data:`MAX_YAML_VALUES` or on a node that
    holds itself."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _TooLarge("an alias (*name) refers to a node that holds it (a recursive document)")
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for kv in node.value for n in kv]
    else:
        children = []
    active.add(key)
    n = 1
    for c in children:
        n += _expanded_size(c, memo, active)
        if n > MAX_YAML_VALUES:
            raise _TooLarge(f"its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; write the "
                            "values out, or use fewer aliases of aliases")
    active.discard(key)
    memo[key] = n
    return n


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last),
    and a document whose aliases expand beyond :data:`MAX_YAML_VALUES` values or into itself."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return self.construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: let SafeLoader say so
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (lines {first} and {key_node.start_mark.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a one-line UserError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", source=str(path)) from None
    except IsADirectoryError:
        inside = sorted(p.name for p in Path(path).glob("*.y*ml"))[:3]
        raise UserError("is a folder, not a YAML file" + (f" (YAML files in it: {', '.join(inside)})" if inside else ""),
                        source=str(path)) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read: {e.__class__.__name__}", source=str(path)) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _TooLarge as e:
        raise UserError(f"refused: {e.why}", source=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"malformed YAML: {where}{problem}", source=str(path)) from None

