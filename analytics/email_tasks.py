"""Celery tasks for the weekly emails."""

__all__: list[str] = []
