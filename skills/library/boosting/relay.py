"""Progress from Ray Train workers back to the driver: an actor the workers push `Event`s to, pumped into the
driver's sink by a thread while training runs."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from skills.library.boosting.loop import Event, Sink


def _relay_actor_class() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class ProgressRelay:
        """Collects worker progress events until the driver drains them."""

        def __init__(self) -> None:
            self.events: list[Event] = []

        def push(self, event: Event) -> None:
            self.events.append(event)

        def drain(self) -> list[Event]:
            out, self.events = self.events, []
            return out

    return ProgressRelay


@contextmanager
def relayed_progress(sink: Sink, poll_s: float = 0.5) -> Iterator[Any]:
    """An actor that workers push Events to, pumped into `sink` by a driver thread while the block runs."""
    import ray

    relay = _relay_actor_class().remote()
    stop = threading.Event()

    def pump() -> None:
        while not stop.wait(poll_s):
            for event in ray.get(relay.drain.remote()):
                sink(event)

    thread = threading.Thread(target=pump, name="agentml-progress", daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join()
        for event in ray.get(relay.drain.remote()):
            sink(event)
        ray.kill(relay)
