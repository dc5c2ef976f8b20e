"""What a pickle would import, read from its opcodes without running any of them.

A pickle runs what it names when loaded (a class, or any callable such as os.system), so a
file from a folder others could change is read here first: search.experiment.saved_state
checks the names against what the harness's state holds.
"""

from __future__ import annotations

import pickletools
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
