"""The command line of scripts/search.py: parse, validate, run; exit codes as documented.

0 done; 1 anything unexpected; 2 bad input (one line, no traceback); 130 interrupted.
Torch, Ray and Optuna are imported only once the input has been checked: `--help`,
`--version` and a typo answer at once.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from search.config.parse import build_parser, given_flags, package_version
from search.config.preflight import checked_settings, warn_of_room
from search.config.settings import SearchSettings
from search.config.usage import SearchInterrupted, UsageError, exit_now
from search.experiment.lock import abandon
from search.experiment.outcomes import shown_path
from search.run.storage_watch import STORAGE_ERRNOS


def _quiet_storage_errors(args: threading.ExceptHookArgs) -> None:
    """A writer thread (TensorBoard's, say) that fails on a full or read-only volume prints
    nothing: the main thread meets the same error and says it in one line (`main`)."""
    if isinstance(args.exc_value, OSError) and args.exc_value.errno in STORAGE_ERRNOS:
        return
    threading.__excepthook__(args)


def main(argv: list[str] | None = None, prog: str = "search.py") -> int:
    """Run a search from command-line arguments; return the process exit code."""
    threading.excepthook = _quiet_storage_errors
    try:
        # Every input, and on --resume the saved state, is checked before Ray starts.
        given = given_flags(argv)
        if given.get("help"):
            build_parser(prog=prog).print_help()
            return 0
        if given.get("version"):
            print(f"transfer-tune {package_version()}")
            return 0
        resume = bool(given.get("resume") or given.get("extend"))
        if resume:
            from search.run.resume import parse_resume

            settings = parse_resume(argv)  # it holds the experiment (search.experiment.lock)
        else:
            settings = checked_settings(argv)
        try:
            run(settings, resume)
        except UsageError:
            abandon(settings.experiment_dir)  # a new experiment refused before it ran
            raise
        except (SearchInterrupted, KeyboardInterrupt):
            # Stopped before its first trial: nothing to resume, and the name stays free.
            if abandon(settings.experiment_dir, interrupted=True):
                raise SearchInterrupted(
                    "Interrupted before the first trial started: nothing ran, nothing is "
                    f"kept in {shown_path(settings.experiment_dir)}; run the same command again"
                ) from None
            raise
        except OSError as error:
            if error.errno not in STORAGE_ERRNOS:
                raise
            # The volume filled up or turned read-only faster than the watch could stop the
            # search (search.run.storage_watch): Tune's last saved state stands.
            from search.run.finish import resume_command

            print(
                f"{prog}: error: cannot write {error.filename or settings.experiment_dir}: "
                f"{error.strerror}; the search stopped. Make room, then resume with:  "
                f"{resume_command(settings)}",
                file=sys.stderr,
            )
            return 1
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except SearchInterrupted as stopped:
        print(f"\n{stopped}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C during Tune's shutdown
        print("\nInterrupted before the state was saved.", file=sys.stderr)
        return 130
    return 0


def run(settings: SearchSettings, resume: bool) -> None:
    """Run the checked search. Torch, torchvision and Optuna take seconds to import: a local
    Ray starts meanwhile, and the search's inputs are prepared (search.run.search.begin)."""
    from search.config.wandb_mode import set_wandb_environment
    from search.run.session import start_ray_while

    def load_and_begin() -> Any:
        from search.run.search import begin  # the heavy modules, imported while Ray starts

        return begin(settings, resume=resume)

    if settings.address:  # a cluster: connected and checked first (search.run.cluster)
        from search.run.search import run_search

        run_search(settings, resume=resume)
    else:
        warn_of_room(settings)  # every check has passed: the search starts
        set_wandb_environment(settings.wandb)  # before Ray starts its processes
        start_ray_while(load_and_begin).run(owns_ray=True)


def command() -> None:
    """The `transfer-tune` command and scripts/search.py: `main`, then a quick exit."""
    exit_now(main())
