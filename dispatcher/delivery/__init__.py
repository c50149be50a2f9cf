"""The delivery-report loop: the webhook receiver, idempotent report application, opt-outs and
inbound replies, and reconciliation of unknown outcomes."""
