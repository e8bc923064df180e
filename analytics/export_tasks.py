"""Celery tasks for asynchronous report exports."""

__all__: list[str] = []
