"""dispatcher: bulk SMS campaigns for Instasent's Transactional API, dispatched on Celery."""

__version__ = "0.1.0"
