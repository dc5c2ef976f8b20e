"""The settings of a search: parsed, resolved and validated as pure functions (no torch, Ray or
Optuna imported: `--help` and a typo answer at once), then checked against files, devices and
storage by `preflight` before Ray starts."""
