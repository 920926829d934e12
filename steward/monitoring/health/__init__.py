"""The five health checks of the maintenance guide and their report: one module per check area."""
