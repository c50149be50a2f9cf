"""The delivery-report loop: idempotent report application, opt-outs and inbound replies, held
reports, and reconciliation of unknown outcomes. The HTTP receiver that feeds it is a front of
its own, :mod:`dispatcher.webhook`."""
