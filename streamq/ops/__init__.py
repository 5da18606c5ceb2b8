"""Operator tools over a queue: dead letters and the Redis settings check."""
