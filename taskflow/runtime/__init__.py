"""Execution: the group-commit writer, executors and the runner; storage-agnostic."""
