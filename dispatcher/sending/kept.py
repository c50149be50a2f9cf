"""The list's own columns carried into a campaign's report (``--keep-columns``, form field
``keep_columns``), so the report joins back to the list by more than a row number.

Once the campaign's list is stored, the file is read once more, chunk by chunk, and the chosen
columns of every data row are kept in one Redis hash per campaign (row number -> JSON list of the
cells), expiring with the campaign. The report adds them, by row, after its own columns; a name
the report already uses gets the prefix ``list:``.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from dispatcher.errors import InputError
from dispatcher.preflight import fileformat, loader
from dispatcher.sending.store import CampaignStore

#: Rows written per Redis round trip.
_WRITE_ROWS = 5000


def parse_keep_columns(spec: str | None) -> tuple[str, ...] | None:
    """``all`` (every column) or ``a,b,c``; None for nothing kept.

    Raises:
        InputError: for an empty list such as ``,``.
    """
    if spec is None or not spec.strip():
        return None
    if spec.strip().lower() == "all":
        return ("*",)
    names = tuple(name.strip() for name in spec.split(",") if name.strip())
    if not names:
        raise InputError(f"--keep-columns takes column names separated by commas, or all; got {spec!r}.")
    return names


def chosen_columns(path: str | Path, names: tuple[str, ...]) -> tuple[str, ...]:
    """The file's columns that ``names`` picks (``("*",)``: all), in the file's order.

    Raises:
        InputError: when a name is not a column of the file (naming the ones it has).
    """
    columns = fileformat.sniff(path).columns
    if names == ("*",):
        return tuple(columns)
    missing = [name for name in names if name not in columns]
    if missing:
        raise InputError(f"--keep-columns names {missing[0]!r}, which {Path(path).name} does not have "
                         f"(its columns: {', '.join(columns)}).")
    return tuple(name for name in columns if name in names)


def store_kept_columns(store: CampaignStore, campaign_id: str, path: str | Path, names: tuple[str, ...]) -> int:
    """Keep the ``names`` columns of every data row of ``path`` with campaign ``campaign_id``;
    returns how many rows. Memory holds one chunk.

    Raises:
        InputError: when the file cannot be read, or a name is not one of its columns.
    """
    columns = chosen_columns(path, names)
    key = store.keys.kept_columns(campaign_id)
    store.redis.hset(store.keys.campaign(campaign_id), "kept_columns", orjson.dumps(list(columns)))
    written = 0
    for chunk in loader.stream(fileformat.sniff(path), lambda c: c, tolerant=True):
        table = chunk.table.select(list(columns))
        cells = [table.column(name).to_pylist() for name in columns]
        rows = chunk.rows.tolist()
        for start in range(0, len(rows), _WRITE_ROWS):
            mapping = {int(rows[i]): orjson.dumps([column[i] for column in cells])
                       for i in range(start, min(len(rows), start + _WRITE_ROWS))}
            if mapping:
                store.redis.hset(key, mapping=mapping)
        written += len(rows)
    return written


def kept_names(store: CampaignStore, campaign_id: str) -> tuple[str, ...]:
    """The list columns kept with the campaign, in order (empty when none)."""
    raw = store.redis.hget(store.keys.campaign(campaign_id), "kept_columns")
    return tuple(orjson.loads(raw)) if raw else ()


def kept_rows(store: CampaignStore, campaign_id: str, rows: list[int], width: int) -> list[list[str]]:
    """The kept cells of each row of ``rows`` (``width`` empty strings for a row with none)."""
    if not rows:
        return []
    raws = store.redis.hmget(store.keys.kept_columns(campaign_id), rows)
    return [[str(v) for v in orjson.loads(raw)] if raw else [""] * width for raw in raws]
