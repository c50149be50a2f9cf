"""Pipeline 2, sending: the campaign store and its batches in Redis, the per-message ledger, the
shared rate limiter, one batch's attempt (claim, reconcile, POST, record), campaign operations,
send windows, schedules and the per-message report."""
