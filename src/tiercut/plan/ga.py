"""Genetic algorithm over placements (one device index per node).

The evolutionary branch of the survey's approximate algorithms (its §4.6:
"greedy algorithms, approximate convex optimization, and genetic
algorithms"; the GA operators of PSO-GA, Chen et al., IEEE TPDS 2021, and
Lin et al., IEEE TII 2020) and of the DNN-migration seed's swarm-intelligence
plan ("simulated annealing (SA), particle swarm optimization (PSO), and
genetic algorithm (GA)"), in the classic generational form (Holland 1975;
Goldberg 1989) with Deb's feasibility rule for constraints (Deb, CMAME 2000):

- selection: tournaments of ``tournament`` individuals, the best by Deb's
  rule wins (feasible before infeasible, then objective, else penalty);
- crossover: with probability ``crossover_rate`` a two-point crossover of
  the parents' rows (a contiguous range of the topological order is
  swapped, so runs of layers -- partitions -- are inherited whole);
- mutation: with probability ``segment_mutation_rate`` a child gets one
  segment move (:meth:`~tiercut.plan._population.SearchSpace.segment_mutation`:
  a node alone, the prefix or the suffix of its topological order at a cut
  point, or the run between two cut points, moved to one device; half the
  cut points biased towards cuts that few bytes cross); the
  classic per-gene mutation (each node to a random allowed device with
  probability ``gene_mutation_rate``) is off by default: a lone node on
  another device adds transfers and almost always hurts (cold starts on 166
  zoo-model problems: with rate 1/|V| one problem ends more than 2% off the
  optimum, none with 0; with a quarter of the default patience, 4 of 74 vs 0);
- elitism: the ``elite`` best individuals survive unchanged, so the best
  placement never gets worse.

Every operator writes only allowed devices (pins and inputs on the source
hold); placements needing a missing link are repaired; the population is
scored by the vectorised cost model (:func:`tiercut.cost.evaluate_many`, or
:func:`tiercut.cost.evaluate_users_many` for a multi-user problem, where a
row holds every user's placement). With ``warm_start`` the initial
population holds the all-local, all-on-one-device, best-single-split and
min-cut placements (at most half of it); the rest are random few-segment
placements.

Guarantee: none (a heuristic); never worse than its best warm-start seed, nor,
warm-started, than its cold run of the same seed and budget (both run).
Seeded: the same ``seed`` gives the same plan. Complexity:
O(generations * population * (|V| + |E|) * |D|).
"""

from __future__ import annotations

import numpy as np

from tiercut.plan._population import (
    HeuristicPlanner,
    Incumbent,
    Scores,
    SearchResult,
    SearchSpace,
    count_problem,
    initial_population,
    probability_problem,
)


class GAPlanner(HeuristicPlanner):
    """Generational GA with tournament selection, two-point crossover, mutation and elitism; seeded."""

    name = "ga"
    summary = "genetic algorithm (tournament, two-point crossover, mutation, elitism), single and multi-user, seeded"
    reference = (
        "survey §4.6 (genetic algorithms); GA operators of PSO-GA (Lin et al., IEEE TII 2020; Chen et al., IEEE TPDS 2021); "
        "Deb, CMAME 2000 (constraints)"
    )
    guarantee = "none: a heuristic (never worse than its best warm-start seed, nor than its cold run of the same seed)"
    complexity = "O(generations * population * (|V| + |E|) * |D|)"

    def __init__(
        self,
        seed: int = 0,
        population: int = 48,
        generations: int = 1000,
        patience: int = 250,
        crossover_rate: float = 0.9,
        gene_mutation_rate: float = 0.0,
        segment_mutation_rate: float = 0.5,
        tournament: int = 2,
        elite: int = 2,
        warm_start: bool = True,
    ) -> None:
        self.seed = seed
        self.population = population
        self.generations = generations
        self.patience = patience
        self.crossover_rate = crossover_rate
        self.gene_mutation_rate = gene_mutation_rate
        self.segment_mutation_rate = segment_mutation_rate
        self.tournament = tournament
        self.elite = elite
        self.warm_start = warm_start

    def settings_problem(self) -> str | None:
        reason = count_problem(
            seed=(self.seed, 0),
            population=(self.population, 2),
            generations=(self.generations, 1),
            patience=(self.patience, 1),
            tournament=(self.tournament, 1),
            elite=(self.elite, 0),
        ) or probability_problem(crossover_rate=self.crossover_rate, segment_mutation_rate=self.segment_mutation_rate)
        reason = reason or probability_problem(gene_mutation_rate=self.gene_mutation_rate)
        if reason:
            return reason
        if self.elite >= self.population:
            return f"setting elite={self.elite} must be smaller than population={self.population}"
        return None

    def search(self, space: SearchSpace, rng: np.random.Generator) -> SearchResult:
        P = int(self.population)
        E = int(self.elite)
        X = initial_population(space, rng, P, max_seeds=max(1, P // 2))
        scores = space.score(X)
        order = scores.order()
        incumbent = Incumbent.first(X, scores, self.patience, order[0])
        rate = float(self.gene_mutation_rate)
        n_children = P - E
        n_pairs = (n_children + 1) // 2
        done = 0
        for done in range(1, int(self.generations) + 1):  # noqa: B007 - reported after the loop
            rank = np.empty(P, dtype=np.int64)
            rank[order] = np.arange(P)
            contenders = rng.integers(0, P, size=(2 * n_pairs, int(self.tournament)))
            winners = contenders[np.arange(2 * n_pairs), np.argmin(rank[contenders], axis=1)]
            mothers, fathers = X[winners[:n_pairs]], X[winners[n_pairs:]]
            crossing = np.flatnonzero(rng.random(n_pairs) < self.crossover_rate)
            n = space.n_columns
            a = rng.integers(0, n, size=n_pairs)
            b = rng.integers(0, n, size=n_pairs)
            lo, hi = np.minimum(a, b), np.maximum(a, b) + 1
            cols = np.arange(n)[None, :]
            swap = (cols >= lo[:, None]) & (cols < hi[:, None])
            swap[np.setdiff1d(np.arange(n_pairs), crossing)] = False
            first = np.where(swap, fathers, mothers)
            second = np.where(swap, mothers, fathers)
            children = np.concatenate([first, second], axis=0)[:n_children]
            children = space.gene_mutation(rng, children, rate)
            children = space.segment_mutation(
                rng, children, np.flatnonzero(rng.random(len(children)) < self.segment_mutation_rate)
            )
            children = space.repair(children)
            child_scores = space.score(children)
            elites = order[:E]
            X = np.concatenate([X[elites], children], axis=0)
            scores = Scores.concat([scores.take(elites), child_scores]) if E else child_scores
            order = scores.order()
            if incumbent.offer(X, scores, order[0]):
                break
        return incumbent.result(f"GA: population {P}, {done} generations")
