"""A small CNN and an edge cluster where one edge server is the bottleneck (shared by the spatial tests)."""

from __future__ import annotations

import functools

import torch

from tiercut.env import Link
from tiercut.problem import Problem, ProblemDevice


class SmallCNN(torch.nn.Module):
    """Four convolutions and two poolings on a 40x40 image, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.r1 = torch.nn.ReLU()
        self.c2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.r2 = torch.nn.ReLU()
        self.p1 = torch.nn.MaxPool2d(2)
        self.c3 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.r3 = torch.nn.ReLU()
        self.c4 = torch.nn.Conv2d(32, 32, 3, padding=1)
        self.r4 = torch.nn.ReLU()
        self.p2 = torch.nn.MaxPool2d(2)
        self.head = torch.nn.Linear(32 * 10 * 10, 10)

    def forward(self, x):
        x = self.p1(self.r2(self.c2(self.r1(self.c1(x)))))
        x = self.p2(self.r4(self.c4(self.r3(self.c3(x)))))
        return self.head(torch.flatten(x, 1))


@functools.cache
def captured_small_cnn():
    from tiercut.graph.capture import capture

    torch.manual_seed(0)
    model = SmallCNN().eval()
    return capture(model, (torch.randn(1, 3, 40, 40),), label="small-cnn")


def edge_cluster_problem(n_edges: int = 3, objective: str = "latency") -> Problem:
    """A phone and ``n_edges`` edge servers; the phone reaches only edge0, the edges share a fast LAN.

    Compute times are synthetic and explicit: ``flops / speed`` with the phone
    20x slower than an edge server; the phone's uplink is fast so offloading
    pays and edge0, the only server the phone reaches, becomes the bottleneck.
    """
    from tiercut.problem import Objective

    captured = captured_small_cnn()
    graph = captured.graph
    speeds = {"phone": 1e9, **{f"edge{i}": 2e10 for i in range(n_edges)}}  # FLOP/s, assumed for the test
    compute = {
        n.name: {d: 1e-5 + n.flops / s for d, s in speeds.items()} for n in graph if not n.is_input
    }
    devices = tuple(
        ProblemDevice(d, "end" if d == "phone" else "edge", power_compute_w=2.0 if d == "phone" else 50.0,
                      power_tx_w=1.0, power_rx_w=0.5, power_idle_w=0.1)
        for d in speeds
    )  # fmt: skip
    links = [Link("phone", "edge0", 1e8, 1e-3, 0.0)]
    links += [Link(f"edge{i}", f"edge{j}", 1.25e9, 1e-4, 0.0) for i in range(n_edges) for j in range(i + 1, n_edges)]
    return Problem(graph, devices, tuple(links), "phone", compute, objective=Objective.parse(objective), name="small-cnn@cluster")
