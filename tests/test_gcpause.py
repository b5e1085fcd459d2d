"""lockenv.gcpause: the cyclic garbage collector off while objects are made by the ten thousand."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from lockenv.gcpause import gc_paused


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_paused_inside_and_running_again_after() -> None:
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: still off when the inner one ends
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_left_off_when_it_was_off_before() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_running_again_after_an_error() -> None:
    gc.enable()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_as_a_decorator() -> None:
    gc.enable()

    @gc_paused()
    def inside() -> bool:
        return gc.isenabled()

    assert inside() is False
    assert inside() is False  # a new pause each call
    assert gc.isenabled()


def test_threads_count_their_pauses() -> None:
    """The collector runs again only once the last of several threads has left."""
    gc.enable()
    entered = threading.Barrier(2)
    first_left = threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with gc_paused():
            entered.wait()
        first_left.set()

    def second() -> None:
        with gc_paused():
            entered.wait()
            first_left.wait()
            seen.append(gc.isenabled())

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [False]
    assert gc.isenabled()
