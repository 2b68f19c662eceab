"""Simulated annealing over placements, several independent chains at once.

Kirkpatrick, Gelatt and Vecchi, "Optimization by simulated annealing",
Science 220, 1983; listed among the swarm-intelligence partition-offloading
methods of the DNN-migration seed ("simulated annealing (SA), particle
swarm optimization (PSO), and genetic algorithm (GA)") and the survey's
heuristic algorithms (§4.6.7).

``chains`` Markov chains run side by side (their proposals are scored in one
call of the vectorised cost model). Each step, each chain proposes one
*segment move* of its placement
(:meth:`~tiercut.plan._population.SearchSpace.segment_mutation`): a node
alone, the prefix or the suffix of the topological order at a cut point,
or the run between two cut points, moved to a random allowed device (half
the cut points drawn with a bias towards cuts that few bytes cross). With
the energy
``E = objective + penalty_weight * scale * penalty`` (``penalty``: the cost
model's relative constraint excess, ``scale``: the median objective of the
initial chains, so temperatures are relative), a proposal is accepted when
``E' <= E`` or with probability ``exp(-(E' - E) / (T * scale))`` (Metropolis);
a placement the cost model cannot evaluate (a missing link) is never
accepted. The temperature falls geometrically from ``t_start`` to ``t_end``
over ``steps``. The best placement met by any chain (Deb's rule: feasible
first, then objective, else least penalty) is returned; the run stops early
after ``patience`` steps without a new best.

With ``warm_start``, half the chains start from the warm-start placements
(all-local, all-on-one-device, best single split, min cut per server), the
others from random few-segment placements. Pins and inputs on the source
hold by construction; placements needing a missing link are repaired.

Guarantee: none (a heuristic); never worse than its best warm-start seed, nor,
warm-started, than its cold run of the same seed and budget (both run).
Seeded: the same ``seed`` gives the same plan. Complexity:
O(steps * chains * (|V| + |E|) * |D|).
"""

from __future__ import annotations

import math

import numpy as np

from tiercut.plan._population import (
    HeuristicPlanner,
    Incumbent,
    SearchResult,
    SearchSpace,
    count_problem,
    initial_population,
)


class SAPlanner(HeuristicPlanner):
    """Simulated annealing with segment moves, parallel chains, geometric cooling; seeded."""

    name = "sa"
    summary = "simulated annealing (parallel chains, segment moves, geometric cooling), single and multi-user, seeded"
    reference = "Kirkpatrick et al., Science 1983; DNN-migration seed and survey §4.6.7 (swarm intelligence / heuristics)"
    guarantee = "none: a heuristic (never worse than its best warm-start seed, nor than its cold run of the same seed)"
    complexity = "O(steps * chains * (|V| + |E|) * |D|)"

    def __init__(
        self,
        seed: int = 0,
        chains: int = 16,
        steps: int = 2000,
        patience: int = 600,
        t_start: float = 0.05,
        t_end: float = 1e-4,
        penalty_weight: float = 10.0,
        warm_start: bool = True,
    ) -> None:
        self.seed = seed
        self.chains = chains
        self.steps = steps
        self.patience = patience
        self.t_start = t_start
        self.t_end = t_end
        self.penalty_weight = penalty_weight
        self.warm_start = warm_start

    def settings_problem(self) -> str | None:
        reason = count_problem(seed=(self.seed, 0), chains=(self.chains, 1), steps=(self.steps, 1), patience=(self.patience, 1))
        if reason:
            return reason
        for name in ("t_start", "t_end", "penalty_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                return f"setting {name}={value!r} must be a number > 0"
        if self.t_end > self.t_start:
            return f"setting t_end={self.t_end} must not exceed t_start={self.t_start}"
        return None

    def search(self, space: SearchSpace, rng: np.random.Generator) -> SearchResult:
        C = int(self.chains)
        steps = int(self.steps)
        X = initial_population(space, rng, C, max_seeds=max(1, (C + 1) // 2))
        scores = space.score(X)
        finite = scores.objective[np.isfinite(scores.objective) & (scores.objective > 0)]
        scale = float(np.median(finite)) if len(finite) else 1.0
        energy = scores.energy(scale, self.penalty_weight)
        incumbent = Incumbent.first(X, scores, self.patience)
        ratio = self.t_end / self.t_start
        step = 0
        for step in range(1, steps + 1):
            temperature = self.t_start * ratio ** ((step - 1) / max(1, steps - 1))
            proposal = space.repair(space.segment_mutation(rng, X, np.arange(C)))
            proposal_scores = space.score(proposal)
            new_energy = proposal_scores.energy(scale, self.penalty_weight)
            with np.errstate(invalid="ignore", over="ignore"):
                delta = new_energy - energy
                chance = np.exp(-np.where(np.isfinite(delta), delta, np.inf) / (temperature * scale))
            accept = np.isfinite(new_energy) & ((delta <= 0) | (rng.random(C) < chance))
            X = np.where(accept[:, None], proposal, X)
            energy = np.where(accept, new_energy, energy)
            scores = scores.updated(accept, proposal_scores)
            if incumbent.offer(proposal, proposal_scores):
                break
        return incumbent.result(f"SA: {C} chains, {step} steps, T {self.t_start:g} -> {temperature:.3g}")
