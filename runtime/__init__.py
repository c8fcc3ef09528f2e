"""The composition root: the one floor that builds stores, models and services from Settings.

It sits above ``ingest`` and ``generation`` and below the processes that use it (``api``, ``workers``,
``evaluation``, ``cli``), so those never import one another to get a service. The task queue is reached
through ``runtime.queue.TaskQueue``; its implementation (Celery, in ``workers``) is found by entry point.
"""
