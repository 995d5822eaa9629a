"""The seeds' experiments as data: lists of run configs for the shared sweep runner."""
