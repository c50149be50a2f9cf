"""Which campaigns and schedules a token reaches: all of them, or those of the accounts it is scoped to.

A campaign or schedule outside a token's accounts is answered exactly as a missing one (404, the
same sentence), so a scoped token cannot learn that it exists. Naming an account outside the scope
when creating something is a plain 403: the caller chose that name, so nothing leaks by saying so.
A campaign's account is its ``account`` field, a schedule's its definition's; both are ``default``
when absent (made before accounts existed).
"""

from __future__ import annotations

from dispatcher.console.auth import TokenInfo
from dispatcher.console.context import ApiError, Console
from dispatcher.errors import UnknownItem
from dispatcher.sending.accounts import DEFAULT_ACCOUNT
from dispatcher.sending.schedules.definition import ScheduleDef
from dispatcher.sending.store import CampaignInfo


def form_account(fields: dict[str, str]) -> str:
    """The account a form names in its ``account`` field (``default`` when left out or empty)."""
    return fields.get("account", "").strip() or DEFAULT_ACCOUNT


def check_account(token: TokenInfo, account: str) -> None:
    """Refuse a token that would create or check something for an account outside its scope.

    Raises:
        ApiError: 403 naming the account.
    """
    if not token.sees(account):
        raise ApiError(403, f"token {token.name!r} may not use account {account[:70]!r}.")


def campaign(console: Console, token: TokenInfo, campaign_id: str) -> CampaignInfo:
    """The campaign ``campaign_id`` when ``token`` reaches it.

    Raises:
        UnknownItem: when there is no such campaign, or it belongs to an account outside the
            token's scope (the same error, word for word). A scoped token is also told "no such
            campaign" for a campaign whose data is incomplete, whose account cannot be read.
    """
    try:
        info = console.store.get(campaign_id)
    except UnknownItem:
        if token.scoped:
            raise console.store.missing(campaign_id) from None
        raise
    if not token.sees(info.account):
        raise console.store.missing(campaign_id)
    return info


def schedule(console: Console, token: TokenInfo, name: str) -> ScheduleDef:
    """The schedule ``name`` when ``token`` reaches it.

    Raises:
        UnknownItem: when there is no such schedule, or it belongs to an account outside the
            token's scope (the same error, word for word).
    """
    definition = console.schedules.get(name)
    if not token.sees(definition.account):
        raise console.schedules.missing(name)
    return definition


def campaigns_page(console: Console, token: TokenInfo, limit: int, offset: int) -> tuple[list[CampaignInfo], int]:
    """The page of campaigns ``token`` reaches, newest first, and how many there are in all."""
    if not token.scoped:
        return console.store.recent(limit, offset), console.store.count()
    return console.store.recent_in(token.accounts, limit, offset)


def schedule_names(console: Console, token: TokenInfo) -> list[str]:
    """The names of the schedules ``token`` reaches, sorted."""
    names = console.schedules.names()
    if not token.scoped:
        return names
    reached: list[str] = []
    for name in names:
        try:
            schedule(console, token, name)
        except UnknownItem:  # outside the scope, or removed while listing
            continue
        reached.append(name)
    return reached
