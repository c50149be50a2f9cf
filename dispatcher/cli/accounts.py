"""``dispatcher account add|list|remove``: the Instasent projects this install sends for.

Tokens are stored encrypted (``DISPATCHER_SECRET_KEY``) and never shown again: ``list`` shows a
fingerprint. ``INSTASENT_TOKEN`` is the account ``default``, listed but never stored.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from rich.text import Text

from dispatcher.cli._app import app
from dispatcher.cli._common import load_resources
from dispatcher.instasent.models import Account
from dispatcher.screens import out
from dispatcher.sending.accounts import AccountBook, AccountInfo, ask_account

account_app = typer.Typer(help="Accounts: the Instasent projects (tokens) this install sends for.",
                          no_args_is_help=True)
app.add_typer(account_app, name="account")


def _book() -> AccountBook:
    resources = load_resources()
    return AccountBook(resources.redis, resources.keys, resources.settings)


@account_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Account name (letters, digits, - and _).")],
    token: str = typer.Option(..., "--token", prompt="Instasent API token", hide_input=True,
                              help="The project's api_sms token (asked without echo when left out; stored "
                                   "encrypted, never shown again)."),
    base_url: str | None = typer.Option(None, "--base-url",
                                        help="Instasent API base URL (default: INSTASENT_BASE_URL, else Instasent's)."),
    organization: str | None = typer.Option(
        None, "--organization", help="The token's organization (default: the one Instasent's account answer names)."),
) -> None:
    """Add an account: its token is encrypted with DISPATCHER_SECRET_KEY before it reaches Redis."""
    info = _book().add(name, token.strip(), base_url, organization)
    out.print(f"Added account {info.name} (organization {info.organization}, token {info.fingerprint}, "
              f"{info.base_url}).")


@account_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="Account name.")]) -> None:
    """Forget an account and its token."""
    _book().remove(name)
    out.print(f"Removed account {name}.")


@account_app.command("list")
def list_accounts(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array instead of a table."),
) -> None:
    """Every account: name, organization, balance (asked live) and token fingerprint; never a token."""
    book = _book()
    book.check_passphrase()
    rows = [_row(info, ask_account(book.resolve(info.name))) for info in book.infos()]
    if as_json:
        typer.echo(orjson.dumps(rows).decode())
        return
    table = Table("name", "organization", "balance", "token", "base URL")
    for row in rows:
        balance = (Text(str(row["balance_error"]), style="red") if row["balance_error"]
                   else f"{row['balance']:,.2f} {row['currency']}")
        table.add_row(str(row["name"]), str(row["organization"] or "-"), balance, str(row["fingerprint"]),
                      str(row["base_url"]))
    out.print(table)


def _row(info: AccountInfo, answer: Account | str) -> dict[str, Any]:
    """One account as the list shows it: the balance or, when it could not be asked, why not."""
    asked = answer if isinstance(answer, Account) else None
    return {
        "name": info.name,
        # ``default`` names no organization of its own: Instasent's answer may.
        "organization": info.organization or (asked.organization if asked else None),
        "balance": asked.available if asked else None,
        "currency": asked.currency if asked else None,
        "balance_error": answer if isinstance(answer, str) else None,
        "fingerprint": info.fingerprint,
        "base_url": info.base_url,
        "created_at": info.created_at,
    }
