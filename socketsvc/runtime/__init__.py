"""The running process: background tasks, lifecycle, GC policy, logs, metrics, HTTP routes."""
