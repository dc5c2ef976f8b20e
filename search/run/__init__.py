"""Orchestration: the Ray session, the tuner (Optuna searcher, ASHA, callbacks), resume and
extend; a search is prepare -> fit -> finish (search.run.search)."""
