"""Data drift: the engines, the reference profile, the material-drift policy and the drift monitor."""
