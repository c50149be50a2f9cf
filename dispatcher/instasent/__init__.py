"""The Instasent edge: the HTTP client (one error-translation point), the API's data models, the
GSM-7/UCS-2 part counter, and ``sandbox/``, a local Instasent-compatible server for tests and demos."""
