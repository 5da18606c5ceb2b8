"""Example apps; ``examples.tasks`` is the one the README and ``scripts/demo`` use."""
