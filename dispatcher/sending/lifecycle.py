"""The campaign transitions, checked in Python (the states and the transitions themselves, with
their diagram, are :mod:`dispatcher.schema.names`' ``State`` and ``TRANSITIONS``).
"""

from __future__ import annotations

from dispatcher.errors import InvalidTransition
from dispatcher.schema.names import TRANSITIONS, State


def check_transition(campaign_id: str, current: str, target: State) -> None:
    """Raise unless ``current`` may move to ``target``.

    Raises:
        InvalidTransition: with a sentence naming both states.
    """
    try:
        state = State(current)
    except ValueError:
        raise InvalidTransition(f"campaign {campaign_id} is in an unknown state {current!r}.") from None
    if target not in TRANSITIONS[state]:
        raise InvalidTransition(f"campaign {campaign_id} is {state.value} and cannot become {target.value}.")
