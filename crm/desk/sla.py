"""The 3T clocks as pure arithmetic: no database, so the rules are tested directly.

A clock's deadline is the opening time plus its minutes plus the time the ticket spent paused.
While a ticket is paused its clocks stand still: the time left is what it was when it paused.
The owner is warned once `warn_percent` of a clock's time has passed; at the deadline the clock
is breached (supervisors told, breach recorded). A step done, late or not, stops its clock.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

CLOCKS = ("tell", "time", "trust")

RUNNING = "running"
WARNING = "warning"
BREACHED = "breached"
PAUSED = "paused"
DONE = "done"
DONE_LATE = "done_late"
STOPPED = "stopped"  # the ticket closed before the step was done

WARN = "warn"
BREACH = "breach"


@dataclass(frozen=True)
class ClockState:
    name: str
    due_at: datetime
    done_at: datetime | None
    state: str
    seconds_left: int  # negative once overdue; frozen while paused; at the done time once done

    @property
    def overdue(self) -> bool:
        return self.seconds_left < 0


def paused_total(*, paused_seconds: int, paused_at: datetime | None, now: datetime) -> timedelta:
    """All the time the ticket has spent paused, including a pause still running."""
    running = (now - paused_at) if paused_at is not None else timedelta(0)
    return timedelta(seconds=paused_seconds) + max(running, timedelta(0))


def deadline(*, opened_at: datetime, minutes: int, paused: timedelta) -> datetime:
    return opened_at + timedelta(minutes=minutes) + paused


def clock_state(
    *,
    name: str,
    opened_at: datetime,
    minutes: int,
    warn_percent: int,
    done_at: datetime | None,
    paused_seconds: int,
    paused_at: datetime | None,
    closed_at: datetime | None,
    now: datetime,
) -> ClockState:
    paused = paused_total(paused_seconds=paused_seconds, paused_at=paused_at, now=now)
    due_at = deadline(opened_at=opened_at, minutes=minutes, paused=paused)
    if done_at is not None:
        # The deadline as it stood when the step was done (later pauses do not matter).
        return ClockState(name, due_at, done_at, DONE if done_at <= due_at else DONE_LATE, _seconds(due_at - done_at))
    until = closed_at or now
    left = _seconds(due_at - until)
    if closed_at is not None:
        return ClockState(name, due_at, None, STOPPED, left)
    if due_at <= until:
        return ClockState(name, due_at, None, BREACHED, left)
    if paused_at is not None:
        return ClockState(name, due_at, None, PAUSED, left)
    warn_at = due_at - timedelta(minutes=minutes) * (100 - warn_percent) / 100
    return ClockState(name, due_at, None, WARNING if now >= warn_at else RUNNING, left)


def escalation_due(state: ClockState, *, paused: bool) -> str | None:
    """What the beat job owes this clock now: a warning to the owner, a breach, or nothing.

    Paused tickets escalate nothing (their clocks stand still). The caller records each level at
    most once and sends the warning before the breach when both are owed at once.
    """
    if paused or state.done_at is not None or state.state == STOPPED:
        return None
    if state.state == BREACHED:
        return BREACH
    if state.state == WARNING:
        return WARN
    return None


def _seconds(delta: timedelta) -> int:
    """Whole seconds, rounded toward zero."""
    return int(delta.total_seconds())


def ticket_clocks(ticket, *, now: datetime) -> list[ClockState]:
    """The three clocks of an opened ticket (any object with the Ticket's clock fields); [] for a draft."""
    if ticket.opened_at is None:
        return []
    return [
        clock_state(
            name=name,
            opened_at=ticket.opened_at,
            minutes=getattr(ticket, f"{name}_minutes"),
            warn_percent=ticket.warn_percent,
            done_at=getattr(ticket, f"{name}_done_at"),
            paused_seconds=ticket.paused_seconds,
            paused_at=ticket.paused_at,
            closed_at=ticket.closed_at,
            now=now,
        )
        for name in CLOCKS
    ]
