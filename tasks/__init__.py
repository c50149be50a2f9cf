"""Celery glue for `dispatcher`: the app and thin tasks that call into the core library."""
