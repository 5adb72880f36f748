"""RunSlots: at most N handlers run at once; one waiting on another service lends its slot."""

from __future__ import annotations

import threading
import time

import pytest

from cinderblock.concurrency import RunSlots


def run_many(slots: RunSlots, count: int, work: object) -> int:
    """Start `count` threads running `work` in a slot; the most seen inside at once."""
    inside, peak, guard = 0, 0, threading.Lock()

    def one() -> None:
        nonlocal inside, peak
        with slots.held():
            with guard:
                inside += 1
                peak = max(peak, inside)
            work()  # type: ignore[operator]
            with guard:
                inside -= 1

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    return peak


def test_no_more_than_the_slots_run_at_once() -> None:
    assert run_many(RunSlots(3), 12, lambda: time.sleep(0.02)) == 3


def test_a_handler_waiting_on_a_call_lets_the_others_run() -> None:
    slots = RunSlots(1)
    release = threading.Event()
    finished: list[str] = []

    def slow() -> None:
        with slots.held(), slots.lent():
            release.wait(timeout=10)  # an RPC call to a slow volume service
        finished.append("slow")

    def quick() -> None:
        with slots.held():
            finished.append("quick")

    slow_thread = threading.Thread(target=slow)
    slow_thread.start()
    time.sleep(0.05)
    quick_thread = threading.Thread(target=quick)
    quick_thread.start()
    quick_thread.join(timeout=5)
    assert finished == ["quick"]  # ran while the slow one waited, with one slot
    release.set()
    slow_thread.join(timeout=5)
    assert finished == ["quick", "slow"]


def test_lending_outside_a_slot_changes_nothing() -> None:
    slots = RunSlots(1)
    with slots.lent():
        pass
    assert run_many(slots, 4, lambda: time.sleep(0.01)) == 1


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError):
        RunSlots(0)
