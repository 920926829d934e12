"""Prefect tasks of Steward's procedures.

Importing this package configures Prefect and MLflow for the Steward home first (see ``flows``), so a task
module imported on its own sees the same settings as the flows.
"""

from steward.config import apply_environment

apply_environment()
