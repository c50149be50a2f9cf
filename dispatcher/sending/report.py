"""Per-message reports: one row per message with its final outcome, as CSV or Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dispatcher.errors import InputError
from dispatcher.preflight.rejects import safe_cell
from dispatcher.sending.store import CampaignStore

#: Report columns, in order.
COLUMNS = ("row", "to", "clientId", "status", "instasent_id", "parts", "price", "attempts", "error", "delivery",
           "delivered_at")


def build_report(store: CampaignStore, cid: str) -> pd.DataFrame:
    """Every message of campaign ``cid`` with its status, Instasent id, parts, price and error."""
    columns: dict[str, list[object]] = {name: [] for name in COLUMNS}
    for n, messages, records in store.iter_batches(cid):
        deliveries = store.deliveries(cid, n)
        for i in range(len(messages)):
            record = records.get(i)
            delivery = deliveries.get(i, ("", "", ""))
            columns["delivery"].append(delivery[0])
            columns["delivered_at"].append(delivery[1])
            status = record.status if record else "pending"
            columns["row"].append(messages.rows[i])
            columns["to"].append(messages.to[i])
            columns["clientId"].append(messages.client_id(cid, i))
            columns["status"].append(status)
            columns["instasent_id"].append(record.instasent_id if record else "")
            columns["parts"].append(messages.parts[i])
            columns["price"].append(messages.price[i])
            columns["attempts"].append(record.attempts if record else 0)
            columns["error"].append(record.error if record else "")
    return pd.DataFrame(columns)


def write_report(frame: pd.DataFrame, path: Path) -> str:
    """Write ``frame`` as Parquet (``.parquet``) or CSV (anything else); returns the format used.

    CSV cells that a spreadsheet would run as a formula are neutralised.

    Raises:
        InputError: when the file cannot be written.
    """
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(path, index=False)
            return "parquet"
        safe = frame.copy()
        for name in ("to", "error", "instasent_id", "clientId"):
            safe[name] = [safe_cell(str(v)) for v in safe[name]]
        safe.to_csv(path, index=False)
        return "csv"
    except OSError as exc:
        raise InputError(f"cannot write the report to {path}: {exc.strerror or exc}.") from None
