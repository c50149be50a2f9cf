"""Step 6 of the preflight: HLR lookups, paid for only when asked, with their cost estimated first.

``PreflightOptions.hlr`` decides: ``True`` (``--hlr``) looks the numbers up; ``False``
(``--no-hlr``) skips the step; ``None`` (nothing said) estimates what the lookups would cost and
how many answers the cache already has, then looks up only when that costs nothing (every
answer cached) or when a ``confirm`` callback (a person at a terminal) says yes. A script, a
schedule firing or a console call without ``confirm`` therefore never spends on lookups unasked.

Before anything is paid for, the budget guard counts the lookups *and* the messages (at most
every number still in the list; a lookup can only remove some): lookups are refused when that sum
exceeds the balance or ``max_cost``, so money is never spent on lookups for a campaign the guard
would then refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatcher.errors import BudgetExceeded
from dispatcher.instasent.models import Account
from dispatcher.preflight.hlr import HlrAnswer, HlrCache, LookupClient, Progress, check_numbers
from dispatcher.preflight.pricing import PriceList, money


@dataclass(frozen=True, slots=True)
class LookupEstimate:
    """What the HLR step would do: ``numbers`` distinct numbers to check, ``cached`` of them
    already answered by the cache (free), the rest paid for at ``cost`` in ``currency``."""

    numbers: int
    cached: int
    cost: float
    currency: str

    @property
    def to_pay(self) -> int:
        """Lookups that would be paid for."""
        return self.numbers - self.cached

    def to_json(self) -> dict[str, Any]:
        """``{"numbers", "cached", "to_pay", "cost", "currency"}``."""
        return {"numbers": self.numbers, "cached": self.cached, "to_pay": self.to_pay,
                "cost": round(self.cost, 6), "currency": self.currency}

    def sentence(self) -> str:
        """``12 numbers: 9 lookups for 0.04 EUR, 3 answered by the cache``."""
        return (f"{self.numbers:,} numbers: {self.to_pay:,} lookups for {money(self.cost, self.currency)}, "
                f"{self.cached:,} answered by the cache")


#: Asked, with the estimate, whether to pay for the lookups; True means yes.
Confirm = Callable[[LookupEstimate], bool]


@dataclass(frozen=True, slots=True)
class LookupSummary:
    """What the HLR step did: ``done`` or not, the lookups paid for per country and their cost,
    the answers taken from the cache, the ``estimate`` made first, and the rejected numbers."""

    done: bool = False
    by_country: dict[str, int] = field(default_factory=dict)
    cost_by_country: dict[str, float] = field(default_factory=dict)
    cached: int = 0
    estimate: LookupEstimate | None = None
    rejected: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Lookups paid for."""
        return sum(self.by_country.values())

    @property
    def cost(self) -> float:
        """Their cost in the account currency."""
        return sum(self.cost_by_country.values())


@dataclass(frozen=True, slots=True)
class HlrStep:
    """Everything the step needs besides the numbers: the choice, prices, balance and cache."""

    hlr: bool | None
    prices: PriceList
    account: Account
    currency: str
    max_cost: float | None
    cache: HlrCache
    client: LookupClient
    concurrency: int
    progress: Progress | None = None
    confirm: Confirm | None = None

    def run(self, numbers: Sequence[str], countries: dict[str, str], message_cost: float) -> LookupSummary:
        """Check the distinct E.164 ``numbers`` (``countries``: number -> ISO country) if asked.

        ``message_cost`` is what the messages to these numbers cost (an upper bound: lookups can
        only remove numbers), for the budget guard.

        Raises:
            BudgetExceeded: when lookups were asked for (``hlr`` True) and they plus the messages
                would cost more than the balance or ``max_cost``; nothing is paid for then.
        """
        if self.hlr is False or not numbers:
            return LookupSummary()
        cached = self.cache.get_many(numbers)
        missing = [n for n in numbers if n not in cached]
        estimate = LookupEstimate(len(numbers), len(cached), self._cost(missing, countries), self.currency)
        if self.hlr is None and estimate.to_pay and not self.confirmed(estimate, message_cost):
            return LookupSummary(estimate=estimate)
        self.guard(estimate.cost, estimate.to_pay, message_cost)
        outcome = check_numbers(numbers, client=self.client, cache=self.cache, concurrency=self.concurrency,
                                progress=self.progress,
                                before_lookups=lambda todo: self.guard(self._cost(todo, countries), len(todo),
                                                                        message_cost))
        return self._summary(outcome.answers, outcome.looked_up, countries, estimate)

    def confirmed(self, estimate: LookupEstimate, message_cost: float) -> bool:
        """Whether lookups not asked for (``hlr`` None) go ahead: only when they fit the balance and
        ``max_cost`` with the messages (``message_cost``) and ``confirm`` says yes."""
        if self.confirm is None:
            return False
        try:
            self.guard(estimate.cost, estimate.to_pay, message_cost)
        except BudgetExceeded:
            return False  # not asked for: the campaign goes on without lookups, and the summary says so
        return self.confirm(estimate)

    def _cost(self, numbers: Sequence[str], countries: dict[str, str]) -> float:
        # A country without a lookup price counts as free.
        return sum(self.prices.get(countries[n]) or 0.0 for n in numbers)

    def guard(self, lookup_cost: float, lookups: int, message_cost: float) -> None:
        """Refuse ``lookups`` lookups costing ``lookup_cost`` that, alone or with the messages
        (``message_cost``), exceed the balance or ``max_cost`` (nothing to refuse without lookups).

        Raises:
            BudgetExceeded: naming the figures.
        """
        total = lookup_cost + message_cost
        limits = [(self.account.available, "the balance")]
        if self.max_cost is not None:
            limits.append((self.max_cost, "--max-cost"))
        for limit, what in limits:
            if lookups and lookup_cost > limit + 1e-9:
                raise BudgetExceeded(
                    f"the {lookups:,} HLR lookups alone would cost {money(lookup_cost, self.currency)}, more than "
                    f"{what} ({money(limit, self.currency)}); run without --hlr or raise it.")
            if lookups and total > limit + 1e-9:
                raise BudgetExceeded(
                    f"the campaign would cost up to {money(total, self.currency)} "
                    f"({money(message_cost, self.currency)} for messages and {money(lookup_cost, self.currency)} "
                    f"for {lookups:,} HLR lookups), more than {what} ({money(limit, self.currency)}); "
                    "run without --hlr or raise it.")

    def _summary(self, answers: dict[str, HlrAnswer], looked_up: list[str], countries: dict[str, str],
                 estimate: LookupEstimate) -> LookupSummary:
        by_country: dict[str, int] = {}
        for number in looked_up:
            by_country[countries[number]] = by_country.get(countries[number], 0) + 1
        costs = {country: count * (self.prices.get(country) or 0.0) for country, count in by_country.items()}
        rejected = {n: a.reason for n, a in answers.items() if not a.usable}
        return LookupSummary(done=True, by_country=by_country, cost_by_country=costs,
                             cached=len(answers) - len(looked_up), estimate=estimate, rejected=rejected)
