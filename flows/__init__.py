"""Steward's procedures as Prefect flows.

Importing this package points Prefect and MLflow at the Steward home (``apply_environment``) before any
flow module imports Prefect, which reads its settings once, at import: ``from flows.retrain import retrain``
in a notebook or script must not fall back to ``~/.prefect``. Values already in the environment win.
"""

from steward.config import apply_environment

apply_environment()
