"""Discrete particle swarm optimisation with genetic operators (PSO-GA).

The swarm-intelligence partition-offloading plan of the DNN-migration seed
(its "Swarm Intelligence Optimization" and the multi-user experiment, where
"we simply apply the PSO algorithm to obtain the offloading position of the
DNN subtasks"), in the discrete form its reference [1] and the survey's
PSO-GA entries use: Lin et al., "Cost-driven off-loading for DNN-based
applications over cloud, edge, and end devices", IEEE TII 16(8), 2020
(self-adaptive discrete PSO with GA operators); Chen et al., "Energy-efficient
offloading for DNN-based smart IoT systems in cloud-edge environments",
IEEE TPDS 33(3), 2021 (SPSO-GA); Huang et al., ISPA 2019 (DPSO-GO).

A particle is a placement (one device index per node; a multi-user particle
holds every user's row). There is no velocity: each iteration a particle
``X`` becomes ``Mu(Cg(Cp(X, pBest, c1), gBest, c2), w)``:

- ``Cp`` / ``Cg`` (cognitive / social): with probability ``c1`` / ``c2`` a
  two-point crossover with the particle's best / the swarm's best (two
  random cut columns; the particle takes either the inside or the outside
  of that range from the best, with equal chance);
- ``Mu`` (inertia): with probability ``w`` one *segment move*
  (:meth:`~tiercut.plan._population.SearchSpace.segment_mutation`): a node
  alone, the prefix or the suffix of the topological order at a cut
  point, or the run between two cut points, moved to a random allowed
  device; half the cut points are drawn with a bias towards cuts that few
  bytes cross (where DNNs split well). PSO-GA mutates one gene;
- ``w`` is self-adaptive as in Lin et al.: ``w = w_max - (w_max - w_min) *
  exp(d / (d - 1.01))`` with ``d`` the fraction of nodes where the particle
  differs from the swarm's best (a particle far from it explores more);
  ``c1`` falls linearly from ``c1_start`` to ``c1_end`` and ``c2`` rises from
  ``c2_start`` to ``c2_end`` over the iterations.

Two measured departures from PSO-GA as published, on 92 problems whose
optima need three devices (9 zoo models over a phone / edge / cloud relay
setting, 4 bandwidth scales, 4 objectives; seeds 0-2, default budgets):
the mutation comes after the crossovers, so a particle pulled onto the
swarm's best still explores around it (mutation first: 4-5 problems more
than 2% off the optimum, worst +32%; last: 1-2, worst +10%); and a
crossover may keep the particle's inside instead of always copying the
best's range (always copying: 2-4 off, worst +30%).

Every operator writes only allowed devices (pins and inputs on the source
hold by construction); placements needing a missing link are repaired
(:meth:`~tiercut.plan._population.SearchSpace.repair`); memory limits and
budgets are handled by Deb's feasibility rule on the cost model's penalty.
The swarm is scored by the vectorised cost model, ``population`` placements
per call. With ``warm_start`` the initial swarm holds the all-local
placement, the all-on-one-device placements, the best single split and the
min cut per server (at most half the swarm); the rest are random
few-segment placements.

Guarantee: none (a heuristic); warm-started, never worse than its cold run of
the same seed and budget (both run); never worse than its best seed (the all-local
placement at least), by Deb's rule. Seeded: the same ``seed`` gives the same
plan. Complexity: O(iterations * population * cost of one evaluation),
i.e. O(iterations * population * (|V| + |E|) * |D|).
"""

from __future__ import annotations

import numpy as np

from tiercut.plan._population import (
    HeuristicPlanner,
    Incumbent,
    SearchResult,
    SearchSpace,
    better,
    count_problem,
    initial_population,
    probability_problem,
)


class PSOPlanner(HeuristicPlanner):
    """Self-adaptive discrete PSO with GA mutation/crossover operators, seeded and reproducible."""

    name = "pso"
    summary = "discrete particle swarm with GA operators (PSO-GA), single and multi-user, seeded"
    reference = (
        "Lin et al., Cost-driven off-loading for DNN-based applications over cloud, edge and end devices, IEEE TII 2020; "
        "Chen et al., SPSO-GA, IEEE TPDS 2021; DNN-migration seed (multi-user PSO)"
    )
    guarantee = "none: a heuristic (never worse than its best warm-start seed, nor than its cold run of the same seed)"
    complexity = "O(iterations * population * (|V| + |E|) * |D|)"

    def __init__(
        self,
        seed: int = 0,
        population: int = 48,
        iterations: int = 1000,
        patience: int = 300,
        w_max: float = 1.0,
        w_min: float = 0.5,
        c1_start: float = 0.9,
        c1_end: float = 0.2,
        c2_start: float = 0.4,
        c2_end: float = 0.9,
        warm_start: bool = True,
    ) -> None:
        self.seed = seed
        self.population = population
        self.iterations = iterations
        self.patience = patience
        self.w_max = w_max
        self.w_min = w_min
        self.c1_start = c1_start
        self.c1_end = c1_end
        self.c2_start = c2_start
        self.c2_end = c2_end
        self.warm_start = warm_start

    def settings_problem(self) -> str | None:
        return count_problem(
            seed=(self.seed, 0), population=(self.population, 2), iterations=(self.iterations, 1), patience=(self.patience, 1)
        ) or probability_problem(
            w_max=self.w_max, w_min=self.w_min, c1_start=self.c1_start, c1_end=self.c1_end, c2_start=self.c2_start,
            c2_end=self.c2_end,
        )

    def search(self, space: SearchSpace, rng: np.random.Generator) -> SearchResult:
        P = int(self.population)
        X = initial_population(space, rng, P, max_seeds=max(1, P // 2))
        scores = space.score(X)
        pbest, pbest_scores = X.copy(), scores
        incumbent = Incumbent.first(X, scores, self.patience)
        iteration = 0
        n = space.n_columns
        for iteration in range(1, int(self.iterations) + 1):
            progress = (iteration - 1) / max(1, int(self.iterations) - 1)
            c1 = self.c1_start + (self.c1_end - self.c1_start) * progress
            c2 = self.c2_start + (self.c2_end - self.c2_start) * progress
            gbest = incumbent.row
            d = (gbest[None, :] != X).sum(axis=1) / n
            w = self.w_max - (self.w_max - self.w_min) * np.exp(d / (d - 1.01))
            rows = np.flatnonzero(rng.random(P) < w)
            X = space.two_point_crossover(rng, X, pbest, np.flatnonzero(rng.random(P) < c1))
            X = space.two_point_crossover(rng, X, np.broadcast_to(gbest, X.shape), np.flatnonzero(rng.random(P) < c2))
            X = space.segment_mutation(rng, X, rows)
            X = space.repair(X)
            scores = space.score(X)
            improved = better(scores, pbest_scores)
            pbest[improved] = X[improved]
            pbest_scores = pbest_scores.updated(improved, scores)
            if incumbent.offer(X, scores):
                break
        return incumbent.result(f"PSO-GA: {P} particles, {iteration} iterations")
