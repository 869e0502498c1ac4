"""Runtime: the node engine that wires the stages together in one process."""
