"""The campaign console (``dispatcher console``): an HTTP API, a live dashboard and Prometheus metrics.

``auth`` (tokens, sessions, CSRF), ``uploads`` (capped, streamed to disk), ``api`` (JSON routes
that call the same library functions as the CLI), ``metrics`` (``/metrics``), ``series`` (the
samples the dashboard's charts draw), ``app`` (the Starlette app) and ``server`` (uvicorn).
"""
