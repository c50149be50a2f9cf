"""Recurring campaigns: a schedule is a stored ``submit`` (a file, the preflight options, optional
send window and expiry) with either a cron expression in a time zone or a fixed interval.

- :mod:`.definition`: a schedule's definition and its due-time arithmetic (cron and intervals);
- :mod:`.store`: definitions, firing state and firing records in Redis;
- :mod:`.firing`: what one trigger does (due, late, duplicate, overlapping, or a new campaign);
- :mod:`.admin`: adding, removing and listing schedules, as the CLI and the console share them.

celery-redbeat only *triggers* firings (``tasks.schedules``); every decision is made here, with
``now`` passed in.
"""
