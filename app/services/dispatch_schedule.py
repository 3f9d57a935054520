"""The order in which one tick hands its claims to SMTP, under each domain
group's connection cap (``app.services.pacing``).

Rules:

- Claims go out in claim order (which carries the fairness between mass
  emails), except that a claim whose group already has its cap of
  conversations in flight waits, and the next claim of a group with room
  goes first: a group at its cap never holds the others up.
- "In flight" counts from the hand-over to the pool until its result is
  collected, which includes the time a job waits for a free connection and
  the moment between the reply and its collection: the count can only be
  above the number of live conversations, so a group never has more than
  its cap talking at once.
- ``withdraw`` takes a throttled group's waiting claims out, to be released.

Pure bookkeeping: no database, no SMTP, no threads.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from itertools import islice

from app.models import DomainGroup
from app.services.dispatch import Claim


class ClaimSchedule:
    """The claims of one tick waiting for their turn."""

    def __init__(self, claims: Iterable[Claim], caps: Mapping[DomainGroup, int]) -> None:
        self._caps = dict(caps)
        self._waiting: dict[DomainGroup, deque[tuple[int, Claim]]] = {}
        for position, claim in enumerate(claims):
            self._waiting.setdefault(claim.domain_group, deque()).append((position, claim))
        self._in_flight: Counter[DomainGroup] = Counter()

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    def in_flight(self, group: DomainGroup) -> int:
        return self._in_flight[group]

    def next_claim(self) -> Claim | None:
        """The earliest waiting claim whose group has room, taken off the
        schedule; None when every waiting claim's group is at its cap (or
        nothing waits)."""
        ready = [
            queue
            for group, queue in self._waiting.items()
            if queue and self._in_flight[group] < self._caps[group]
        ]
        if not ready:
            return None
        _, claim = min(ready, key=lambda queue: queue[0][0]).popleft()
        return claim

    def upcoming(self, group: DomainGroup, count: int) -> list[Claim]:
        """The next ``count`` waiting claims of ``group``, left in place."""
        queue = self._waiting.get(group, deque())
        return [claim for _, claim in islice(queue, count)]

    def started(self, claim: Claim) -> None:
        """``claim`` was handed to the pool."""
        self._in_flight[claim.domain_group] += 1

    def finished(self, claim: Claim) -> None:
        """``claim``'s result was collected (or its job withdrawn)."""
        if self._in_flight[claim.domain_group] > 0:
            self._in_flight[claim.domain_group] -= 1

    def withdraw(self, group: DomainGroup) -> list[Claim]:
        """Take every waiting claim of ``group`` off the schedule."""
        queue = self._waiting.pop(group, deque())
        return [claim for _, claim in queue]
