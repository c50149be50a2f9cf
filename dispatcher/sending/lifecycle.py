"""Campaign states and the transitions allowed between them.

::

    queued ──► running ──► completed
      │          │  ▲           ▲
      │          ▼  │ resume    │ (its last batch settled while paused)
      │        paused ──────────┘
      ▼          │
    cancelled ◄──┘ (from queued, running or paused)
    failed    ◄── queued, running or paused (401: configuration error); resume retries it
"""

from __future__ import annotations

from enum import StrEnum

from dispatcher.errors import InvalidTransition


class State(StrEnum):
    """Where a campaign stands."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


#: state -> states it may move to.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING, State.PAUSED, State.CANCELLED, State.FAILED, State.COMPLETED}),
    State.RUNNING: frozenset({State.PAUSED, State.COMPLETED, State.CANCELLED, State.FAILED}),
    State.PAUSED: frozenset({State.RUNNING, State.COMPLETED, State.CANCELLED, State.FAILED}),
    State.FAILED: frozenset({State.RUNNING, State.CANCELLED}),
    State.COMPLETED: frozenset(),
    State.CANCELLED: frozenset(),
}

class BatchState(StrEnum):
    """Where one batch stands (the ``st`` field of its hash)."""

    #: Not being sent: never tried, or waiting for a retry.
    PENDING = "p"
    #: Claimed by a worker whose lease has not expired (a POST may be in flight).
    IN_FLIGHT = "i"
    #: Some messages' outcome is unknown: reconcile by clientId before sending again.
    UNKNOWN = "u"
    #: Every message has a terminal record.
    DONE = "d"


#: States in which batches are sent.
SENDING = frozenset({State.QUEUED, State.RUNNING})
#: States a campaign never leaves.
FINAL = frozenset({State.COMPLETED, State.CANCELLED})


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
