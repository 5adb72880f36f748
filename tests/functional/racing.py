"""Firing many HTTP requests at once: one client and thread each, released by a barrier."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import httpx

from conftest import Api

Call = Callable[[Api], httpx.Response]


def fire(api: Api, calls: Sequence[Call]) -> list[httpx.Response]:
    """Run every call in its own thread on its own connection, all released together.

    Each client sends one GET first so its connection is open before the barrier: the
    requests then reach the server as close together as threads allow.
    """
    clients = [Api(api.base, api.project, user=api.user) for _ in calls]
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | BaseException | None] = [None] * len(calls)

    def run(index: int) -> None:
        client = clients[index]
        try:
            client.get("/volumes?limit=1")
            barrier.wait(timeout=60)
            results[index] = calls[index](client)
        except BaseException as err:  # reported below, in the test's thread
            results[index] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.client.close()
    responses: list[httpx.Response] = []
    for result in results:
        if not isinstance(result, httpx.Response):
            raise AssertionError(f"a racing request did not get an answer: {result!r}")
        responses.append(result)
    return responses
