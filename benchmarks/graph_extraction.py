"""Time to extract the layer graph of each zoo model (median of 5).

Extraction = fx trace + output check + one measured pass (shapes, FLOPs) +
parameter accounting, from a constructed model; building the model with
random weights is timed apart. Target: resnet50 under 3 s on 2 cores.

    .venv/bin/python benchmarks/graph_extraction.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result

warnings.filterwarnings("ignore", category=FutureWarning)

TARGET_RESNET50_S = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from tiercut.graph import ZOO, resolve_model
    from tiercut.graph.capture import capture

    rows = []
    for name in ZOO:
        build_s, extract_s = [], []
        graph = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            source = resolve_model(name)
            built = time.perf_counter()
            graph = capture(source.module, source.example_inputs, name).graph
            done = time.perf_counter()
            build_s.append(built - start)
            extract_s.append(done - built)
        assert graph is not None
        rows.append(
            {
                "model": name,
                "nodes": len(graph),
                "extract_s_median": statistics.median(extract_s),
                "extract_s_all": extract_s,
                "build_s_median": statistics.median(build_s),
                "gflops": graph.total_flops / 1e9,
                "params": graph.total_param_count,
            }
        )
        print(f"{name:16s} nodes={len(graph):4d} extract={rows[-1]['extract_s_median']:.3f}s "
              f"(build {rows[-1]['build_s_median']:.2f}s)", flush=True)
    resnet50 = next(r for r in rows if r["model"] == "resnet50")["extract_s_median"]
    verdict = "meets" if resnet50 < TARGET_RESNET50_S else "MISSES"
    print(f"resnet50 extraction {resnet50:.3f}s: {verdict} the {TARGET_RESNET50_S:.0f} s target")
    target = {"resnet50_extract_s": TARGET_RESNET50_S, "met": resnet50 < TARGET_RESNET50_S}
    path = write_result("graph_extraction", {"repeats": args.repeats, "models": rows, "target": target})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
