"""A step's events reach each request's queue in order, whatever order the steps list them in."""

import asyncio
from types import SimpleNamespace

from inference.delivery import hand_out


def _receiver():
    return SimpleNamespace(queue=asyncio.Queue())


def test_a_step_never_overtakes_the_step_before_for_any_request():
    async def run():
        loop = asyncio.get_running_loop()
        a, b = _receiver(), _receiver()
        # Two steps arrive before the loop hands out the first; the second lists b first (a
        # request admitted mid-step emits before the batch's rows).
        loop.call_soon(hand_out, [(a, ["a1"]), (b, ["b1"])], loop)
        loop.call_soon(hand_out, [(b, ["b2"]), (a, ["a2"])], loop)
        for _ in range(10):
            await asyncio.sleep(0)
        return [a.queue.get_nowait() for _ in range(2)], [b.queue.get_nowait() for _ in range(2)]

    assert asyncio.run(run()) == (["a1", "a2"], ["b1", "b2"])


def test_receivers_are_handed_out_one_per_turn_of_the_loop():
    async def run():
        loop = asyncio.get_running_loop()
        receivers = [_receiver() for _ in range(3)]
        loop.call_soon(hand_out, [(r, [i]) for i, r in enumerate(receivers)], loop)
        await asyncio.sleep(0)  # the hand-out runs; the first receiver gets its events
        await asyncio.sleep(0)
        return [r.queue.qsize() for r in receivers]

    assert asyncio.run(run())[-1] == 0  # not every receiver in the same turn
