"""One benchmark figure: a value with its unit, its reference and its goal."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Figure:
    area: str
    name: str
    value: float
    unit: str
    reference: str = ""  # what it is compared with, measured in the same run where possible
    goal: str = ""  # the target, e.g. "<= 48 KB"
    met: bool | None = None  # None where there is no goal

    def row(self) -> tuple[str, str, str, str, str, str]:
        met = "" if self.met is None else ("yes" if self.met else "NO")
        return (self.area, self.name, f"{self.value:,.4g} {self.unit}", self.reference, self.goal, met)

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank (no interpolation: what really happened)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
