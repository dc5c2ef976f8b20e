"""The experiment folder: its layout (every file name, once), what a trial's outcome is called,
the local or stored copy and its sync, checkpoint retention, and the saved state a resume reads
(the one module that knows Ray's and Optuna's on-disk formats and private attributes)."""
