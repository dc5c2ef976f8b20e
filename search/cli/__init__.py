"""The command lines: each parses its flags and checks what it can before it imports torch,
Ray, Optuna or matplotlib, so that `--help` and a mistake answer at once."""
