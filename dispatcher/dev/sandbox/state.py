"""Everything the sandbox remembers: config, balance, messages, lookups, counters and logs.

All state is in memory and touched only from the event loop, with no ``await`` between checking
and changing it, so a request is staged and accepted atomically.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from dispatcher.dev.sandbox.clock import iso_utc, now
from dispatcher.dev.sandbox.config import Faults, SandboxConfig, parse_projects
from dispatcher.dev.sandbox.dlr import STATUS_CODES, DlrSender, Report
from dispatcher.dev.sandbox.hlr import hlr_answer
from dispatcher.dev.sandbox.prices import LOOKUP_PRICE, MICROS, price_profile, sms_price_micros, to_micros
from dispatcher.dev.sandbox.ratelimit import FixedWindowLimiter
from dispatcher.dev.sandbox.regions import REGION_CODES
from dispatcher.dev.sandbox.requestlog import RequestLog
from dispatcher.dev.sandbox.stats import Stats
from dispatcher.dev.sandbox.validation import ALREADY_USED, ValidItem, check_item

_ids = random.Random()


def new_id() -> str:
    """A random 24-character hex id, like Instasent's."""
    return _ids.randbytes(12).hex()


def new_ids(count: int) -> list[str]:
    """``count`` ids as :func:`new_id` makes them, drawn at once."""
    hexes = _ids.randbytes(12 * count).hex()
    return [hexes[i:i + 24] for i in range(0, 24 * count, 24)]


class StoredSms(NamedTuple):
    """An accepted message. ``seq`` is its index in acceptance order; ``accepted_at`` is Unix seconds.

    The state stores each one as a plain ``tuple`` (:data:`SmsRow`): the garbage collector stops
    tracking exact tuples of plain values, so millions of stored messages cost nothing per
    collection (a tuple subclass stays tracked). Readers get a ``StoredSms`` back.
    """

    seq: int
    id: str
    client_id: str | None
    sender: str
    to: str
    text: str
    encoding: str
    parts: int
    price_micros: int
    created_at: str
    accepted_at: float

    def entity(self) -> dict[str, Any]:
        """The SMS entity as the API returns it."""
        return sms_entity(self)


#: How a :class:`StoredSms` is stored: the same fields in a plain tuple.
SmsRow = tuple[Any, ...]


def sms_entity(row: SmsRow) -> dict[str, Any]:
    """The SMS entity of a stored row, as the API returns it."""
    _, sms_id, client_id, sender, to, text, encoding, parts, price_micros, created_at, _ = row
    return {
        "id": sms_id, "clientId": client_id, "from": sender, "to": to, "text": text, "status": "enqueued",
        "encoding": encoding, "parts": parts, "price": price_micros / MICROS, "createdAt": created_at,
    }


class Organization:
    """One organization the sandbox plays: its balance and its per-endpoint rate limits, shared by
    every token (project) of it. ``name`` is None for the nameless one of a sandbox without projects."""

    def __init__(self, name: str | None, balance_micros: int, limit_per_min: int) -> None:
        self.name = name
        self.balance_micros = balance_micros
        self.limiter = FixedWindowLimiter(limit_per_min)

    @property
    def balance(self) -> float:
        """Available balance in the account currency."""
        return self.balance_micros / MICROS


@dataclass(slots=True)
class Staged:
    """A request's items after validation: what would be accepted, what is refused, the total cost."""

    valid: list[ValidItem]
    errors: list[dict[str, Any]]
    cost_micros: int


class SandboxState:
    """The sandbox's memory; :meth:`reset` brings it back to the starting config."""

    def __init__(self, config: SandboxConfig) -> None:
        self.initial = copy.deepcopy(config)
        self.stats = Stats()
        self.request_log = RequestLog()
        self.dlr = DlrSender(self.stats)
        self.config = copy.deepcopy(config)
        self._apply_config()

    # -- configuration ------------------------------------------------------------------------
    def reset(self, overrides: dict[str, Any] | None = None) -> None:
        """Forget everything, restore the starting config, then apply ``overrides``.

        Raises:
            ValueError: for an unknown field or a value of the wrong type (nothing is changed).
        """
        config = apply_overrides(copy.deepcopy(self.initial), overrides or {})
        self.config = config
        self.stats = Stats()
        self.dlr.stats = self.stats
        self.dlr.clear()
        self.request_log.clear()
        self._apply_config()

    def set_faults(self, changes: dict[str, Any]) -> Faults:
        """Change some fault options now; returns the faults in force.

        Raises:
            ValueError: for an unknown field or a value that is not a number.
        """
        self.config.faults = apply_faults(self.config.faults, changes)
        return self.config.faults

    def _apply_config(self) -> None:
        config = self.config
        balance, limit = to_micros(config.balance), config.rate_limit_per_min
        #: Each organization by name, and the organization of each accepted token.
        self.orgs: dict[str | None, Organization] = {}
        self.token_orgs: dict[str, Organization] = {}
        for name, token in config.projects or ((None, config.token),):
            if name not in self.orgs:
                self.orgs[name] = Organization(name, balance, limit)
            self.token_orgs[token] = self.orgs[name]
        #: Whose rate-limit headers a refused token is shown: the one organization of a sandbox
        #: without projects (as before), else none of the real ones (a stranger learns nothing).
        self.anonymous = next(iter(self.orgs.values())) if not config.projects else Organization(None, 0, limit)
        self.prices = sms_price_micros(config.unpriced_countries)
        self.lookup_price_micros = to_micros(LOOKUP_PRICE)
        lookup_prices = dict.fromkeys(REGION_CODES, self.lookup_price_micros)
        #: Serialised price-profile answers (they change only on reset).
        self.sms_profile = orjson.dumps({"entities": price_profile(self.prices, config.currency)})
        self.lookup_profile = orjson.dumps({"entities": price_profile(lookup_prices, config.currency)})
        self.fault_dice = random.Random(None if config.seed is None else f"faults:{config.seed}")
        self.dlr_dice = random.Random(None if config.seed is None else f"dlr:{config.seed}")
        self._sms_rows: list[SmsRow] = []
        self._sms_by_id: dict[str, SmsRow] = {}
        #: clientId → seq of its first accepted message, and of any later ones (uniqueness off).
        self.sms_by_client: dict[str, int] = {}
        self.sms_repeats: dict[str, list[int]] = {}
        self.submissions: dict[str, int] = {}
        self.lookups: list[dict[str, Any]] = []
        self.lookups_by_id: dict[str, dict[str, Any]] = {}

    @property
    def balance(self) -> float:
        """Available balance in the account currency, summed over the organizations."""
        return sum(org.balance_micros for org in self.orgs.values()) / MICROS

    def roll(self, rate: float) -> bool:
        """True with probability ``rate``, from the seeded fault dice."""
        return rate > 0 and self.fault_dice.random() < rate

    # -- SMS ------------------------------------------------------------------------------------
    def stage(self, items: list[Any]) -> Staged:
        """Validate ``items`` and count their submissions; nothing is accepted yet."""
        prices = self.prices
        accepted_ids = self.sms_by_client
        submissions = self.submissions
        enforce = self.config.enforce_unique_client_id
        pending: set[str] = set()
        valid: list[ValidItem] = []
        errors: list[dict[str, Any]] = []
        cost = 0
        duplicates = 0
        for index, item in enumerate(items):
            ok, problems = check_item(item, prices)
            client_id = item.get("clientId") if isinstance(item, dict) else None
            if isinstance(client_id, str):
                submissions[client_id] = submissions.get(client_id, 0) + 1
                if client_id in accepted_ids or client_id in pending:
                    duplicates += 1
                    if enforce:
                        problems = problems or {}
                        problems.setdefault("clientId", []).append(ALREADY_USED)
                        ok = None
            if ok is None:
                errors.append({"index": index, "clientId": client_id,
                               "to": item.get("to") if isinstance(item, dict) else None, "errors": problems})
                continue
            valid.append(ok)
            cost += ok.parts * ok.unit_micros
            if ok.client_id is not None:
                pending.add(ok.client_id)
        self.stats.duplicate_submissions += duplicates
        self.stats.rejected += len(errors)
        return Staged(valid, errors, cost)

    def accept(self, staged: Staged, org: Organization) -> list[SmsRow]:
        """Record every valid item of ``staged`` and charge ``org`` (the caller checked its balance).

        Returns the new rows (see :class:`StoredSms` for their fields).
        """
        t = now()
        created_at = iso_utc(t)
        by_client = self.sms_by_client
        by_id = self._sms_by_id
        rows = self._sms_rows
        first = seq = len(rows)
        duplicates = 0
        for item, sms_id in zip(staged.valid, new_ids(len(staged.valid)), strict=True):
            row = (seq, sms_id, item.client_id, item.sender, item.to, item.text, item.encoding, item.parts,
                   item.parts * item.unit_micros, created_at, t)
            rows.append(row)
            by_id[sms_id] = row
            client_id = item.client_id
            if client_id is not None:
                if client_id in by_client:
                    self.sms_repeats.setdefault(client_id, []).append(seq)
                    duplicates += 1
                else:
                    by_client[client_id] = seq
            seq += 1
        org.balance_micros -= staged.cost_micros
        self.stats.accepted += seq - first
        self.stats.duplicate_accepted += duplicates
        return rows[first:]

    def accepted_count(self, client_id: str) -> int:
        """How many accepted messages carry ``client_id``."""
        if client_id not in self.sms_by_client:
            return 0
        return 1 + len(self.sms_repeats.get(client_id, ()))

    def plan_reports(self, accepted: Iterable[SmsRow]) -> list[Report]:
        """Schedule the delivery reports of ``accepted``; returns those due before the response."""
        config = self.config
        url = config.dlr_url
        if not url:
            return []
        dice = self.dlr_dice
        failed, expired = config.dlr_failed_rate, config.dlr_expired_rate
        duplicate, early_rate = config.dlr_duplicate_rate, config.dlr_early_rate
        later: list[Report] = []
        twice: list[Report] = []
        early: list[Report] = []
        for row in accepted:
            sms = StoredSms._make(row)
            roll = dice.random() if failed or expired else 1.0
            status = "failed" if roll < failed else "expired" if roll < failed + expired else "delivered"
            payload = {"id": sms.id, "clientId": sms.client_id, "status": status, "code": STATUS_CODES[status],
                       "eventAt": iso_utc(sms.accepted_at + config.dlr_delay_s)}
            report = self.dlr.new_report(url, payload)
            if early_rate and dice.random() < early_rate:
                early.append(report)
            else:
                later.append(report)
            if duplicate and dice.random() < duplicate:
                twice.append(self.dlr.new_report(url, payload))
        self.dlr.schedule(later, config.dlr_delay_s)
        self.dlr.schedule(twice, config.dlr_delay_s + 0.05)
        return early

    def find_sms(self, client_ids: list[str]) -> list[StoredSms]:
        """Accepted messages with any of ``client_ids``, newest first."""
        seqs: list[int] = []
        for client_id in dict.fromkeys(client_ids):
            first = self.sms_by_client.get(client_id)
            if first is not None:
                seqs.append(first)
                seqs.extend(self.sms_repeats.get(client_id, ()))
        return [StoredSms._make(self._sms_rows[seq]) for seq in sorted(seqs, reverse=True)]

    @property
    def sms_count(self) -> int:
        """Messages accepted since the last reset."""
        return len(self._sms_rows)

    def get_sms(self, sms_id: str) -> StoredSms | None:
        """The accepted message with id ``sms_id``, if any."""
        row = self._sms_by_id.get(sms_id)
        return None if row is None else StoredSms._make(row)

    def sms_slice(self, start: int, stop: int) -> list[StoredSms]:
        """Accepted messages ``start`` to ``stop`` (exclusive) in acceptance order."""
        return [StoredSms._make(row) for row in self._sms_rows[max(0, start):max(0, stop)]]

    def sms_page(self, page: int, per_page: int) -> list[StoredSms]:
        """Page ``page`` (1-based) of accepted messages, newest first."""
        end = self.sms_count - (page - 1) * per_page
        return self.sms_slice(end - per_page, end)[::-1] if end > 0 else []

    # -- lookups --------------------------------------------------------------------------------
    def lookup(self, to: str, region: str, org: Organization) -> dict[str, Any]:
        """Perform one lookup of ``to`` and charge ``org`` (the caller checked the number and its balance)."""
        answer = hlr_answer(to, region)
        entity: dict[str, Any] = {
            "id": new_id(), "to": to, "status": answer.status, "country": region, "mcc": answer.mcc,
            "mnc": answer.mnc, "network": answer.network, "ported": answer.ported,
            "price": self.lookup_price_micros / MICROS, "createdAt": iso_utc(now()),
        }
        self.lookups.append(entity)
        self.lookups_by_id[entity["id"]] = entity
        org.balance_micros -= self.lookup_price_micros
        self.stats.lookups += 1
        return entity


def _coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the field's current value ``default``."""
    if isinstance(default, bool) or name == "enforce_unique_client_id":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if name in {"seed"}:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer or null")
        return value
    if name in {"dlr_url"}:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or null")
        return value or None
    if name == "projects":
        if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
            raise ValueError(f"{name} must be a list of ORG:TOKEN strings")
        return parse_projects(value)
    if name == "unpriced_countries":
        if not isinstance(value, list | tuple) or not all(isinstance(c, str) for c in value):
            raise ValueError(f"{name} must be a list of ISO country codes")
        return tuple(c.upper() for c in value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        return value
    if isinstance(default, int | float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        return type(default)(value)
    raise ValueError(f"{name} cannot be changed")


def apply_faults(faults: Faults, changes: dict[str, Any]) -> Faults:
    """A copy of ``faults`` with ``changes`` applied.

    Raises:
        ValueError: for an unknown field or a value that is not a number.
    """
    names = {f.name for f in dataclasses.fields(Faults)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown fault option(s): {', '.join(unknown)}")
    updated = copy.copy(faults)
    for name, value in changes.items():
        setattr(updated, name, float(_coerce(name, value, 0.0)))
    return updated


def apply_overrides(config: SandboxConfig, overrides: dict[str, Any]) -> SandboxConfig:
    """``config`` with ``overrides`` (SandboxConfig fields; ``faults`` as a partial object) applied.

    Raises:
        ValueError: for an unknown field or a value of the wrong type.
    """
    names = {f.name for f in dataclasses.fields(SandboxConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown config option(s): {', '.join(unknown)}")
    for name, value in overrides.items():
        if name == "faults":
            if not isinstance(value, dict):
                raise ValueError("faults must be an object")
            config.faults = apply_faults(config.faults, value)
        else:
            setattr(config, name, _coerce(name, value, getattr(config, name)))
    return config
