"""Issue 17's front door: changing conditions, measured on shaped links and predicted in the simulator.

Sections (``--sections``, default all), each a script that also runs alone and writes its own JSON:

- ``adapt`` (``benchmarks/dynamic_adapt.py``): ``tiercut run --adapt`` on links whose rate drops and
  recovers mid-run, on token-bucket and on real (netns + tc) links, beside the simulator's prediction
  for the same bandwidth schedule: time to adapt, latency before/during/after, re-planning time per decision;
- ``mobility`` (``benchmarks/dynamic_mobility.py``): users moving between edge servers, the static,
  reactive, proactive (PerDNN) and oracle strategies: latency around hand-overs, bytes wasted, peak memory;
- ``learned`` (``benchmarks/dynamic_learned.py``): the DQN over :mod:`tiercut.gym` against static,
  greedy re-planning, hysteresis and the oracle on held-out traces.

Writes benchmarks/results/dynamic.json (each section under its name, with the host and its load) and
prints each section's table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dynamic_adapt
import dynamic_learned
import dynamic_mobility
from _common import write_result

#: section name -> (its run(quick), what prints its table)
SECTIONS: dict[str, tuple[Callable[[bool], dict[str, Any]], Callable[[dict[str, Any]], None]]] = {
    "adapt": (dynamic_adapt.run, dynamic_adapt.report),
    "mobility": (dynamic_mobility.run, dynamic_mobility.report),
    "learned": (dynamic_learned.run, dynamic_learned.report),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each section's quick variant")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"unknown section {unknown[0]!r}; use some of {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    for name in sections:
        run, report = SECTIONS[name]
        print(f"\n[{name}]", flush=True)
        start = time.perf_counter()
        results[name] = run(args.quick)
        results[name]["section_s"] = time.perf_counter() - start
        report(results[name])
    path = write_result("dynamic", {"quick": args.quick, **results})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
