"""A local Instasent-compatible server for tests, demos and benchmarks (``dispatcher sandbox``).

It speaks Instasent's Transactional API (https://docs.instasent.com) as
:mod:`dispatcher.instasent.client` uses it, under ``/`` and ``/transactional/v1/``: per-endpoint
rate limits, balance, per-item validation, deterministic HLR lookups
(:mod:`dispatcher.dev.sandbox.hlr`), a price list (:mod:`dispatcher.dev.sandbox.prices`),
delivery reports with duplicates and retries, and injected faults. ``/_sandbox/*`` inspects and
steers it.

Modules: ``config`` (options), ``app`` (Starlette app), ``server`` (uvicorn), ``routes``, ``api``
(Instasent handlers), ``control`` (``/_sandbox/*``), ``state`` (memory), ``validation``, ``regions``,
``prices``, ``hlr``, ``ratelimit``, ``dlr``, ``requestlog``, ``stats``, ``clock``.
"""
