"""Which extensions are talking right now, from the call core's watcher hook.

A ring group skips a member who is already in a conversation (no call waiting for
group calls), as an office PBX does. Kept per node: a member talking through another
node is seen busy by its phone's 486 instead.
"""

from __future__ import annotations


class Activity:
    def __init__(self) -> None:
        self._talking: dict[str, set[str]] = {}  # extension -> Call-IDs in conversation
        self._numbers: dict[str, tuple[str, ...]] = {}  # Call-ID -> its extensions

    def talking(self, number: str) -> bool:
        return bool(self._talking.get(number))

    def changed(self, call_id: str, state: str, numbers: tuple[str, ...]) -> None:
        if state == "answered" and call_id not in self._numbers:
            self._numbers[call_id] = numbers
            for number in numbers:
                self._talking.setdefault(number, set()).add(call_id)
        elif state == "ended":
            for number in self._numbers.pop(call_id, ()):
                calls = self._talking.get(number)
                if calls is not None:
                    calls.discard(call_id)
                    if not calls:
                        del self._talking[number]
