"""The experiment folder's own files, by name: what the driver writes at its root (Ray Tune's
trial folders and state files are Ray's). Plain constants: every command line reads them
before importing anything heavy."""

from __future__ import annotations

SETTINGS_FILE = "settings.json"  # the resolved settings the experiment was made with
STUDY_FILE = "optuna.db"  # the Optuna study, named after the experiment
SUMMARY_FILE = "summary.json"  # what the search found: search.summary
REPORT_FILE = "report.html"  # the page of the results: search.report
DRIVER_FILES = (SETTINGS_FILE, STUDY_FILE, SUMMARY_FILE, REPORT_FILE)
