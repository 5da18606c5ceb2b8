"""A pool of worker processes: the supervisor, its watch over running jobs, process helpers."""
