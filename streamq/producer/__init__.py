"""The producer side: the App (task registry, enqueue), registered tasks, and job handles."""
