"""What the preflight is asked (:class:`PreflightOptions`) and what it answers (:class:`PreflightResult`),
and the guards the CLI applies to the answer: the budget, and a list that leaves nothing to send."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from dispatcher.errors import BudgetExceeded, InputError
from dispatcher.preflight import render
from dispatcher.preflight.lookups import LookupEstimate
from dispatcher.preflight.phones import parse_region
from dispatcher.preflight.pricing import money
from dispatcher.preflight.rejects import Reject
from dispatcher.schema.names import DEFAULT_ACCOUNT


@dataclass(frozen=True, slots=True)
class PreflightOptions:
    """The ``dispatcher preflight`` options: exactly one of ``text`` (a ``{column}`` template) and
    ``text_column``; ``sender`` is ``--from``; ``country`` the default ISO region; ``max_cost`` in
    the account currency."""

    text: str | None = None
    text_column: str | None = None
    sender: str | None = None
    country: str | None = None
    phone_column: str | None = None
    #: HLR lookups: True looks up, False skips, None (not said) only when free or confirmed.
    hlr: bool | None = None
    gsm_only: bool = False
    max_cost: float | None = None
    #: The account whose client asks Instasent (prices, balance, HLR) and whose campaigns' opt-outs apply.
    account: str = DEFAULT_ACCOUNT

    def validated(self) -> PreflightOptions:
        """The options checked and normalised (country upper-cased, sender trimmed).

        Raises:
            InputError: for a missing or doubled text option, a bad country, sender or max cost.
        """
        if (self.text is None) == (self.text_column is None):
            raise InputError("give the message as --text 'Hello {name}' or --text-column COLUMN (one of them).")
        if self.text is not None:
            render.Template.parse(self.text)
        if self.max_cost is not None and not (math.isfinite(self.max_cost) and self.max_cost >= 0):
            raise InputError(f"--max-cost must be a number of at least 0, got {self.max_cost}.")
        return replace(self, country=parse_region(self.country), sender=render.check_sender(self.sender),
                       account=(self.account or "").strip() or DEFAULT_ACCOUNT)


@dataclass(frozen=True, slots=True)
class CountrySummary:
    """Messages, SMS parts, lookups and cost (messages plus lookups) to one country."""

    messages: int
    parts: int
    cost: float
    lookups: int = 0

    def to_json(self) -> dict[str, Any]:
        """``{"messages", "parts", "cost", "lookups"}`` with the cost rounded to micro-units."""
        return {"messages": self.messages, "parts": self.parts, "cost": _round(self.cost), "lookups": self.lookups}


@dataclass(slots=True)
class PreflightResult:
    """Everything the preflight found out.

    ``messages`` holds one row per message to send, in file order, with the columns of
    :data:`dispatcher.schema.names.MESSAGE_COLUMNS` (``price`` = parts x the country's price per
    part). ``valid`` is also the number of messages (:attr:`message_count`). Money is in
    ``currency``: ``cost`` is ``message_cost + lookup_cost``; ``balance`` is what the account had
    before any lookup.
    """

    file: str
    source: str
    phone_column: str
    rows: int
    valid: int
    rejected: int
    duplicates: int
    suppressed: int
    parts: int
    unicode: int
    message_cost: float
    lookups: int
    lookups_cached: int
    lookup_cost: float
    currency: str
    balance: float
    by_country: dict[str, CountrySummary]
    rejects: Sequence[Reject]
    messages: pd.DataFrame = field(repr=False)
    #: Rejected rows with no value for a placeholder of the text (counted among ``rejected``).
    empty_values: int = 0
    #: Whether the HLR step ran, and what it would cost (made first; None with ``hlr`` off).
    hlr_done: bool = False
    hlr_estimate: LookupEstimate | None = None
    #: The suppression list's version (``SuppressionList.version``) before the numbers were checked
    #: against it: batches skip the check while it has not changed. None: unknown, always check.
    suppression_version: int | None = None
    #: The preview, the characters forcing Unicode and the parts histogram
    #: (:meth:`dispatcher.preflight.insight.Insight.to_json`); empty when not counted.
    insight: dict[str, Any] = field(default_factory=dict)

    @property
    def message_count(self) -> int:
        """Messages to send (equal to ``valid``)."""
        return self.valid

    @property
    def cost(self) -> float:
        """Total cost: messages plus the lookups paid for in this run."""
        return self.message_cost + self.lookup_cost

    def to_json(self, max_rejects: int | None = None) -> dict[str, Any]:
        """The ``dispatcher preflight --json`` object.

        ``rejects`` lists every rejected row, or the first ``max_rejects`` of them (an answer over
        HTTP stays small however bad the file is); ``rejects_listed`` says how many are listed and
        ``rejected`` how many there are.
        """
        # One pass over the rejects (a spill on disk may be read only once at a time): the listed
        # ones, the sample and the count of every reason.
        listed: list[dict[str, Any]] = []
        sample: list[dict[str, Any]] = []
        reasons: Counter[str] = Counter()
        for reject in self.rejects:
            reasons[reject.reason] += 1
            if max_rejects is None or len(listed) < max_rejects:
                listed.append(reject.to_json())
            if len(sample) < SAMPLE_REJECTS:
                sample.append(reject.to_json())
        return {
            "file": self.file, "rows": self.rows, "valid": self.valid, "rejected": self.rejected,
            "duplicates": self.duplicates, "suppressed": self.suppressed, "messages": self.valid,
            "parts": self.parts, "unicode": self.unicode, "cost": _round(self.cost),
            "message_cost": _round(self.message_cost), "lookups": self.lookups,
            "lookups_cached": self.lookups_cached, "lookup_cost": _round(self.lookup_cost),
            "currency": self.currency, "balance": _round(self.balance),
            "by_country": {c: s.to_json() for c, s in sorted(self.by_country.items())},
            "empty_values": self.empty_values, "hlr": self.hlr_done,
            "hlr_estimate": self.hlr_estimate.to_json() if self.hlr_estimate is not None else None,
            "rejects": listed, "rejects_listed": len(listed),
            **self.insight,
            "countries": [{"country": c, "messages": s.messages, "parts": s.parts, "lookups": s.lookups,
                           "cost": _round(s.cost),
                           "unit_price": _round(s.cost / s.parts) if s.parts and not s.lookups else None}
                          for c, s in sorted(self.by_country.items(), key=lambda kv: (-kv[1].messages, kv[0]))],
            "sample_rejects": sample, "reject_reasons": dict(reasons.most_common()),
        }


#: Rejected rows shown as a sample in the preflight's answer.
SAMPLE_REJECTS = 10
#: Keys of the preflight's answer that a campaign's stored summary leaves out: the rows (rejected
#: or previewed) and what repeats ``by_country`` (the one-pass summary is made without the rejects).
ANSWER_ONLY = frozenset({"rejects", "by_country", "countries", "sample_rejects", "reject_reasons", "preview",
                         "unicode_chars"})


def _round(amount: float) -> float:
    return round(float(amount), 6)


def check_budget(result: PreflightResult, max_cost: float | None = None) -> None:
    """Refuse a campaign that costs more than the balance or than ``max_cost``.

    Raises:
        BudgetExceeded: with one sentence giving both figures.
    """
    cost, currency = result.cost, result.currency
    if cost > result.balance + 1e-9:
        raise BudgetExceeded(f"the campaign would cost {money(cost, currency)} but the balance is only "
                             f"{money(result.balance, currency)}.")
    if max_cost is not None and cost > max_cost + 1e-9:
        raise BudgetExceeded(f"the campaign would cost {money(cost, currency)}, more than --max-cost "
                             f"{money(max_cost, currency)}.")


def check_sendable(result: PreflightResult) -> None:
    """Refuse a list that leaves no message to send (every row rejected, suppressed or empty).

    Raises:
        InputError: with the preflight's reasons, most frequent first (exit code 2).
    """
    if result.message_count:
        return
    reasons = Counter(reject.reason for reject in result.rejects).most_common()
    parts = [f"{count:,} {reason}" for reason, count in reasons[:3]]
    if len(reasons) > 3:
        parts.append(f"{sum(count for _, count in reasons[3:]):,} for other reasons")
    if result.suppressed:
        parts.append(f"{result.suppressed:,} suppressed")
    why = f" ({'; '.join(parts)})" if parts else ""
    raise InputError(f"no row of {Path(result.file).name} can be sent{why}: fix the list (`dispatcher preflight "
                     f"{result.file} --rejects-out rejects.csv` lists every rejected row) and submit it again.")
