"""`transfer-tune SUBCOMMAND ...`: one installed command for the search and everything after
it. Each subcommand is the same as its `scripts/*.py`; `transfer-tune --help` lists them."""

from __future__ import annotations

import importlib
import sys

from search.config.parse import package_version
from search.config.usage import exit_now

# subcommand -> (module of search.cli, one line of help)
SUBCOMMANDS = {
    "search": ("search", "search freeze depth and learning rates (the main job)"),
    "report": ("report", "write an experiment's report.html again"),
    "board": ("board", "browse an experiment in TensorBoard"),
    "export": ("export", "write the best trial's model as one self-contained file"),
    "predict": ("predict", "classify images with an exported model"),
    "benchmark": ("benchmark", "measure the harness's performance (from a clone)"),
}


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()]
    return (
        "usage: transfer-tune SUBCOMMAND [FLAGS]   (transfer-tune SUBCOMMAND --help for its "
        "flags)\n\nHyperparameter search for transfer learning of image classifiers.\n\n"
        "subcommands:\n" + "\n".join(lines) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the subcommand's `main`; its exit code, or 2 for an unknown one."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="")
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"transfer-tune {package_version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(
            f"transfer-tune: error: unknown subcommand {name!r}; choose one of: "
            f"{', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"search.cli.{SUBCOMMANDS[name][0]}")
    return module.main(rest, prog=f"transfer-tune {name}")


def command() -> None:
    """The installed `transfer-tune` command: `main`, then a quick exit (search.config.usage)."""
    exit_now(main())
