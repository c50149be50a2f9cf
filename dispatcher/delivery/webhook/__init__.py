"""The delivery-report receiver (``dispatcher webhook``)."""
