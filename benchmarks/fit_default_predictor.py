"""Fit the predictor tiercut ships (src/tiercut/profile/data/default_predictor.json).

Profiles every zoo model on this host at module and block granularity
(or re-uses the profiles of benchmarks/prediction_accuracy.py with --reuse),
fits :func:`tiercut.profile.fit_predictor` on all of them and writes the
JSON the package loads with :func:`tiercut.profile.load_default_predictor`.
Its ``host`` field records the machine, thread count and clock; its
per-op models record their cross-validated errors.

    .venv/bin/python benchmarks/fit_default_predictor.py [--threads 1] [--clock wall|cpu] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prediction_accuracy import profile_zoo

warnings.filterwarnings("ignore", category=FutureWarning)

TARGET = Path(__file__).resolve().parent.parent / "src" / "tiercut" / "profile" / "data" / "default_predictor.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--granularity", default="module,block")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()

    from tiercut.graph import ZOO
    from tiercut.profile import fit_predictor

    profiles = []
    for gran in (g for g in args.granularity.split(",") if g):
        print(f"profiling the zoo at {gran} granularity")
        profiles += profile_zoo(
            list(ZOO), gran, threads=args.threads, clock=args.clock, repeats=args.repeats, reuse=args.reuse
        )
    predictor = fit_predictor(profiles)
    args.out.write_text(json.dumps(predictor.to_dict(), separators=(",", ":")) + "\n")
    print(f"fitted on {len(profiles)} profiles ({predictor.host.name}, {predictor.clock} clock): "
          f"{len(predictor.models)} models -> {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    for key, model in sorted(predictor.models.items()):
        print(f"  {key:32s} {model.family:10s} n={model.n_samples:4d} from {model.n_models} models, "
              f"cv score {model.cv_error:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
