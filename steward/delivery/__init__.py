"""Progressive delivery: traffic plans, rollouts, canary and blue-green decisions, experiments, evidence."""
