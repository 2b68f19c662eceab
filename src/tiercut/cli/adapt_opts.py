"""``tiercut run``'s adaptation options: ``--adapt`` and its settings, ``--link-schedule``.

=====================  ==============================================================
flag                   meaning
=====================  ==============================================================
``--adapt``            estimate the links, re-plan with hysteresis, switch between queries
``--adapt-estimator``  ``ewma`` (default) or ``window``
``--adapt-alpha``      the EWMA's weight of a new sample (0.25)
``--adapt-window``     the windowed estimator's window (2 s)
``--adapt-threshold``  least predicted relative gain of a new plan (0.2: 20 % faster)
``--adapt-dwell``      how long the gain must hold before the switch (1 s)
``--adapt-interval``   least time between two re-planning decisions (0.1 s)
``--probe-interval``   probe a link no transfer measured for this long (0.5 s; 0: never)
``--link-schedule``    ``A-B=T:RATE,...``: the emulated link's rate from T seconds on (repeatable)
=====================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from tiercut.errors import TiercutError

AdaptOpt = Annotated[
    bool, typer.Option("--adapt", help="estimate the links from the run's transfers, re-plan with hysteresis, switch plans")
]
EstimatorOpt = Annotated[str, typer.Option("--adapt-estimator", help="link estimator: ewma or window")]
AlphaOpt = Annotated[float, typer.Option("--adapt-alpha", help="EWMA weight of a new sample, in (0, 1]")]
WindowOpt = Annotated[float, typer.Option("--adapt-window", help="windowed estimator's window in seconds")]
ThresholdOpt = Annotated[
    float, typer.Option("--adapt-threshold", help="least predicted relative gain of a new plan (0.2: a plan 20 percent faster)")
]
DwellOpt = Annotated[float, typer.Option("--adapt-dwell", help="seconds the gain must hold before switching")]
IntervalOpt = Annotated[float, typer.Option("--adapt-interval", help="least seconds between two re-planning decisions")]
ProbeOpt = Annotated[
    float, typer.Option("--probe-interval", help="probe a server link no transfer measured for this many seconds (0: never)")
]
ScheduleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--link-schedule",
        help="emulated link rate over the run: A-B=TIME:RATE,... e.g. end-edge=0:10MB/s,20:1MB/s,40:10MB/s (repeatable)",
    ),
]


@dataclass(frozen=True)
class AdaptOptions:
    """The adaptation options of ``tiercut run``."""

    adapt: AdaptOpt = False
    adapt_estimator: EstimatorOpt = "ewma"
    adapt_alpha: AlphaOpt = 0.25
    adapt_window: WindowOpt = 2.0
    adapt_threshold: ThresholdOpt = 0.2
    adapt_dwell: DwellOpt = 1.0
    adapt_interval: IntervalOpt = 0.1
    probe_interval: ProbeOpt = 0.5
    link_schedule: ScheduleOpt = None

    def settings(self, algorithm: str, upload_algorithm: str) -> Any:
        """The :class:`~tiercut.runtime.adapt.AdaptSettings` (None without ``--adapt``), checked."""
        from tiercut.runtime.adapt import AdaptSettings

        tuned = {
            "--adapt-estimator": self.adapt_estimator != "ewma", "--adapt-alpha": self.adapt_alpha != 0.25,
            "--adapt-window": self.adapt_window != 2.0, "--adapt-threshold": self.adapt_threshold != 0.2,
            "--adapt-dwell": self.adapt_dwell != 1.0, "--adapt-interval": self.adapt_interval != 0.1,
            "--probe-interval": self.probe_interval != 0.5,
        }
        if not self.adapt:
            given = [flag for flag, changed in tuned.items() if changed]
            if given:
                raise TiercutError(f"{given[0]} tunes --adapt; add --adapt")
            return None
        return AdaptSettings(
            estimator=self.adapt_estimator, alpha=self.adapt_alpha, window_s=self.adapt_window,
            threshold=self.adapt_threshold, dwell_s=self.adapt_dwell, interval_s=self.adapt_interval,
            probe_interval_s=self.probe_interval, algorithm=algorithm, upload_algorithm=upload_algorithm,
        )

    def schedule(self) -> Any:
        """The :class:`~tiercut.runtime.adapt.LinkSchedule` of ``--link-schedule`` (None without it), checked."""
        from tiercut.runtime.adapt import LinkSchedule

        return LinkSchedule.parse(self.link_schedule) if self.link_schedule else None


#: the options as ``run`` declares its ``adapt_options`` parameter
DEFAULT_ADAPT_OPTIONS = AdaptOptions()

__all__ = ["DEFAULT_ADAPT_OPTIONS", "AdaptOptions"]
