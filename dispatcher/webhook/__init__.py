"""The delivery-report receiver (``dispatcher webhook``): a front, like the console, over the report
handling of :mod:`dispatcher.delivery`."""
