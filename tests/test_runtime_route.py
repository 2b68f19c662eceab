"""Routes: bounds on what arrives from the network, and work linear in the route's size."""

from __future__ import annotations

import asyncio

import pytest

from tiercut.runtime.route import MAX_ROUTE_NAMES, MAX_ROUTE_STEPS, Route, RouteError, Step, run_route


def _chain(n: int, device: str = "edge") -> Route:
    """v0 -> v1 -> ... -> vn, each step reading the previous value and the model input x."""
    steps = tuple(Step(i, device, f"p{i}", (f"v{i}", "x"), (f"v{i + 1}",)) for i in range(n))
    return Route(steps, (f"v{n}",), "end")


def test_a_long_route_keeps_only_the_values_later_steps_read():
    route = _chain(MAX_ROUTE_STEPS)
    alive: list[int] = []

    async def run_step(step, inputs):
        alive.append(len(values))
        (name,) = step.output_names
        return {name: inputs[step.input_names[0]] + 1}, 0.0

    async def forward(*_):
        raise AssertionError("every step is on this device")

    values = {"v0": 0, "x": 0}
    end = asyncio.run(run_route(route, "edge", ["end"], 0, values, run_step, forward, []))
    assert end == len(route) and values == {f"v{MAX_ROUTE_STEPS}": MAX_ROUTE_STEPS}
    assert max(alive) == 2  # the previous value and x: nothing accumulates


@pytest.mark.parametrize(
    "data, message",
    [
        (_chain(MAX_ROUTE_STEPS + 1).to_dict(), "more than 4096"),
        ({**_chain(1).to_dict(), "result_names": ["r"] * (MAX_ROUTE_NAMES + 1)}, "at most 65536"),
        ({"steps": [{**_chain(1).steps[0].to_dict(), "input_names": ["x" * 257]}], "result_names": [], "source": "e"}, "1..256"),
        ({"steps": [{**_chain(1).steps[0].to_dict(), "index": "0"}], "result_names": [], "source": "e"}, "wrong type"),
        ({"steps": [{**_chain(1).steps[0].to_dict(), "device": "d" * 300}], "result_names": [], "source": "e"}, "256"),
        ({"steps": [], "source": "e"}, "lacks result_names"),
        ({"steps": "all of them"}, "list of steps"),
        ([1, 2], "list of steps"),
    ],
)
def test_routes_beyond_the_bounds_or_malformed_are_refused(data, message):
    with pytest.raises(RouteError, match=message) as info:
        Route.from_dict(data)
    assert "\n" not in str(info.value)


def test_a_route_round_trips():
    route = _chain(5)
    assert Route.from_dict(route.to_dict()) == route
    assert route.is_live("x", 4) and not route.is_live("x", 5) and route.is_live("v5", 5) and not route.is_live("v1", 2)
