"""The campaign transitions, checked in Python (the states and the transitions themselves, with
their diagram, are :mod:`dispatcher.schema.names`' ``State`` and ``TRANSITIONS``).
"""

from __future__ import annotations

from dispatcher.errors import InvalidTransition

# ``FINAL as FINAL`` and ``BatchState as BatchState`` (and ``State``) are here only while
# sending/attempt.py, campaigns.py and loading.py (another part of issue 20, edited apart) import
# them from this module; at merge they import dispatcher.schema.names and the two aliases go.
from dispatcher.schema.names import FINAL as FINAL
from dispatcher.schema.names import TRANSITIONS, State
from dispatcher.schema.names import BatchState as BatchState


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
