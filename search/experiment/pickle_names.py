"""What a pickle would import, read from its opcodes without running any of them, and
whether an allow-list lets it.

A pickle runs what it names when loaded (a class, or any callable such as os.system), so a
file from a folder others could change is read here first: search.experiment.saved_state
holds the list of what the harness's state names.
"""

from __future__ import annotations

import functools
import importlib
import pickletools
from dataclasses import dataclass
from typing import Any

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
               "BINSTRING", "STRING"}  # fmt: skip
_MARK = object()


def pickle_globals(data: bytes) -> list[tuple[Any, Any]]:
    """The (module, name) of every global a pickle would import, read from its opcodes
    without running any (a stack of its strings, as pickletools.dis keeps it). A name this
    cannot tell is (None, None)."""
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    found: list[tuple[Any, Any]] = []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            found.append((module, name))
        elif op.name == "STACK_GLOBAL":
            found.append((stack[-2], stack[-1]) if len(stack) >= 2 else (None, None))
        before, to_pop = op.stack_before, len(op.stack_before)
        if pickletools.markobject in before or (op.name == "POP" and stack and stack[-1] is _MARK):
            while stack and stack[-1] is not _MARK:  # everything at and after the mark
                stack.pop()
            if stack:
                stack.pop()
            marked = pickletools.markobject in before
            to_pop = before.index(pickletools.markobject) if marked else 0
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):  # the top stays
            memo[len(memo) if op.name == "MEMOIZE" else arg] = stack[-1] if stack else None
            continue
        if to_pop:
            del stack[-to_pop:]
        if op.name == "MARK":
            stack.append(_MARK)
        elif op.name in _STRING_OPS:
            stack.append(arg)
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg))
        else:
            stack.extend([None] * len(op.stack_after))
    return found


@dataclass(frozen=True)
class Allowed:
    """The globals a pickle may import: classes that `packages` define themselves, the
    (module, qualname) pairs of `functions`, and `builtins` by name; never `refused`."""

    packages: tuple[str, ...]
    functions: frozenset[tuple[str, str]]
    builtins: frozenset[str]
    refused: frozenset[tuple[str, str]]

    def trusts(self, module: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in self.packages)

    def allows(self, module: Any, name: Any) -> bool:
        """Whether `module`.`name` may be imported: a listed function or builtin, or a class
        a trusted package defines itself (not one it imports from elsewhere, and never an
        attribute of an attribute). Decided once per name."""
        if not isinstance(module, str) or not isinstance(name, str):
            return False
        return _allows(self, module, name)


@functools.cache
def _allows(allowed: Allowed, module: str, name: str) -> bool:
    if (module, name) in allowed.functions:
        return True
    if module == "builtins":
        return name in allowed.builtins
    if "." in name or not allowed.trusts(module) or (module, name) in allowed.refused:
        return False
    try:  # its module is installed code, not the file's
        thing = getattr(importlib.import_module(module), name)
    except Exception:
        return False
    return isinstance(thing, type) and allowed.trusts(thing.__module__)
