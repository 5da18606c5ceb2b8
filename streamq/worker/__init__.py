"""One worker process: its loop, batch helpers, failure policy, job context and slot."""
