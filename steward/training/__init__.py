"""Training and its gate: data, estimators, fitting, evaluation, probes, the validation gate."""
