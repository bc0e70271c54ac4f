"""Results: per-row throughput and ratios, goal checks, the printed table, JSON and a PNG bar chart."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Result:
    """Measured throughput of one case (best of the timed passes)."""

    key: str
    label: str
    kind: str
    images: int
    encoded_bytes: int
    seconds: list[float]
    rows: int  # rows the untimed pass produced
    pixel_bytes: int  # image bytes the untimed pass produced
    expect_rows: int
    expect_pixels: int | None
    ceiling: str | None = None
    spark_ref: str | None = None
    vs_spark: float | None = None
    vs_ceiling: float | None = None
    cpu_seconds: list[float] = field(default_factory=list)  # CPU of the driver's process tree per timed pass

    @property
    def best(self) -> float:
        """Fastest timed pass, in seconds."""
        return min(self.seconds)

    @property
    def images_per_s(self) -> float:
        """Images per second of the fastest pass."""
        return self.images / self.best

    @property
    def mb_per_s(self) -> float:
        """Encoded megabytes (10^6 bytes) per second of the fastest pass."""
        return self.encoded_bytes / 1e6 / self.best

    @property
    def cpu_ms_per_image(self) -> float | None:
        """CPU milliseconds per image (least over the timed passes): robust to other load on the machine."""
        return min(self.cpu_seconds) / self.images * 1e3 if self.cpu_seconds else None

    @property
    def output_ok(self) -> bool:
        """The untimed pass gave the expected rows (and pixel bytes, where known)."""
        return self.rows == self.expect_rows and (self.expect_pixels is None or self.pixel_bytes == self.expect_pixels)

    def to_dict(self) -> dict:
        """JSON-friendly form with the derived numbers."""
        d = asdict(self)
        cpu = self.cpu_ms_per_image
        d.update(best_s=round(self.best, 4), images_per_s=round(self.images_per_s, 1),
                 mb_per_s=round(self.mb_per_s, 2), output_ok=self.output_ok,
                 cpu_ms_per_image=None if cpu is None else round(cpu, 3))
        return d


@dataclass(frozen=True)
class Goal:
    """``numerator`` / ``denominator`` throughput must reach ``target``."""

    text: str
    numerator: str
    denominator: str
    target: float


#: The goals checked after every run (keys of :class:`Result`).
GOALS = (
    Goal("full decode >= 3x Spark's image source", "gpuimages_cpu", "spark_image", 3.0),
    Goal("full decode >= 75% of the Pillow ceiling", "gpuimages_cpu", "pillow", 0.75),
    Goal("resize 224 >= 75% of the Pillow draft+resize ceiling", "gpuimages_cpu_resize", "pillow_resize", 0.75),
    Goal("decode_images >= 3x the recipe as written", "decode_images", "recipe", 3.0),
    Goal("decode_images >= 1.0x the hand-tuned recipe", "decode_images", "recipe_tuned", 1.0),
    Goal("GPU full decode >= 3x Spark's image source", "gpuimages_gpu", "spark_image", 3.0),
)


@dataclass
class GoalCheck:
    """The outcome of one :class:`Goal` (``ratio`` None when a row is missing)."""

    text: str
    ratio: float | None
    target: float
    met: bool | None = None
    cpu_ratio: float | None = None  # the same ratio from CPU cost per image (denominator's / numerator's)

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return asdict(self)


def add_ratios(results: list[Result]) -> None:
    """Fill ``vs_spark`` and ``vs_ceiling`` from the rows they name."""
    by_key = {r.key: r for r in results}
    for r in results:
        ref = by_key.get(r.spark_ref or "")
        r.vs_spark = r.images_per_s / ref.images_per_s if ref else None
        ceil = by_key.get(r.ceiling or "")
        r.vs_ceiling = r.images_per_s / ceil.images_per_s if ceil else None


def check_goals(results: list[Result], goals: tuple[Goal, ...] = GOALS) -> list[GoalCheck]:
    """Evaluate each goal whose rows were measured (GPU goals only appear when the GPU rows exist)."""
    by_key = {r.key: r for r in results}
    out = []
    for g in goals:
        num, den = by_key.get(g.numerator), by_key.get(g.denominator)
        if num is None or den is None:
            continue
        ratio = num.images_per_s / den.images_per_s
        cpu = None
        if num.cpu_ms_per_image and den.cpu_ms_per_image:
            cpu = den.cpu_ms_per_image / num.cpu_ms_per_image
        out.append(GoalCheck(g.text, ratio, g.target, ratio >= g.target, cpu))
    return out


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_table(results: list[Result], title: str = "") -> str:
    """A fixed-width text table: images/s, MB/s, ratio to Spark's source and to the ceiling."""
    head = (f"{'reader':<52} {'images':>6} {'best s':>7} {'img/s':>8} {'MB/s':>7} {'x Spark':>8} {'% ceil':>7} "
            f"{'CPU ms/img':>10}  ok")
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    for r in results:
        pct = None if r.vs_ceiling is None else r.vs_ceiling * 100
        lines.append(
            f"{r.label[:52]:<52} {r.images:>6} {r.best:>7.2f} {r.images_per_s:>8.0f} {r.mb_per_s:>7.1f} "
            f"{_fmt(r.vs_spark, '.2f', 'x'):>8} {_fmt(pct, '.0f', '%'):>7} {_fmt(r.cpu_ms_per_image, '.2f'):>10}  "
            f"{'yes' if r.output_ok else 'NO'}"
        )
    return "\n".join(lines)


def format_goals(checks: list[GoalCheck]) -> str:
    """One line per goal: PASS/FAIL, measured ratio and target."""
    lines = ["Goals:"]
    for c in checks:
        status = "PASS" if c.met else "FAIL"
        lines.append(f"  [{status}] {c.text}: {_fmt(c.ratio, '.2f')} (target {c.target:g}; "
                     f"from CPU cost per image: {_fmt(c.cpu_ratio, '.2f')})")
    return "\n".join(lines)


def decode_bounds(results: list[Result]) -> dict:
    """What full decode inside Spark can reach: the Pillow ceiling and the Spark floor sharing the same cores.

    ``bound`` = 1 / (1 / pillow + 1 / spark_floor) images/s (both saturate every core), and the same from CPU
    cost per image (``cpu_bound_ms`` = pillow + floor ms/img). Empty when either row is missing.
    """
    by_key = {r.key: r for r in results}
    pillow, floor, ours = by_key.get("pillow"), by_key.get("spark_floor"), by_key.get("gpuimages_cpu")
    if pillow is None or floor is None:
        return {}
    bound = 1 / (1 / pillow.images_per_s + 1 / floor.images_per_s)
    out: dict = {"bound_images_per_s": round(bound, 1)}
    if pillow.cpu_ms_per_image and floor.cpu_ms_per_image:
        out["cpu_bound_ms_per_image"] = round(pillow.cpu_ms_per_image + floor.cpu_ms_per_image, 3)
        out["floor_share_of_bound"] = round(floor.cpu_ms_per_image / out["cpu_bound_ms_per_image"], 3)
    if ours is not None:
        out["gpuimages_vs_bound"] = round(ours.images_per_s / bound, 3)
        if ours.cpu_ms_per_image and "cpu_bound_ms_per_image" in out:
            out["gpuimages_vs_cpu_bound"] = round(out["cpu_bound_ms_per_image"] / ours.cpu_ms_per_image, 3)
            out["bound_vs_pillow_cpu"] = round(pillow.cpu_ms_per_image / out["cpu_bound_ms_per_image"], 3)
    return out


def format_bounds(bounds: dict) -> str:
    """One paragraph on the Pillow + Spark-floor bound for full decode."""
    if not bounds:
        return ""
    text = f"Bound for full decode in Spark (Pillow ceiling + Spark floor on the same cores): " \
           f"{bounds['bound_images_per_s']:.0f} img/s"
    if "cpu_bound_ms_per_image" in bounds:
        text += (f"; by CPU {bounds['cpu_bound_ms_per_image']:.2f} ms/img, of which the Spark floor is "
                 f"{bounds['floor_share_of_bound'] * 100:.0f}%")
    if "gpuimages_vs_bound" in bounds:
        text += f".\ngpuimages full decode reaches {bounds['gpuimages_vs_bound'] * 100:.0f}% of it"
        if "gpuimages_vs_cpu_bound" in bounds:
            text += (f" ({bounds['gpuimages_vs_cpu_bound'] * 100:.0f}% by CPU cost); the bound itself is "
                     f"{bounds['bound_vs_pillow_cpu'] * 100:.0f}% of the Pillow ceiling by CPU cost")
    return text + "."


def format_scaling(rows: list[dict]) -> str:
    """The scaling table: gpuimages CPU read and the Pillow ceiling per worker count."""
    head = (f"{'workers':>7} {'gpuimages img/s':>16} {'Pillow img/s':>13} {'% ceil':>7} {'speed-up':>9} "
            f"{'CPU ms/img':>10} {'Pillow CPU':>10}")
    lines = ["Scaling (gpuimages read_images, device='cpu', full decode):", head, "-" * len(head)]
    base = rows[0]["gpuimages_images_per_s"] if rows else None
    for row in rows:
        g, p = row["gpuimages_images_per_s"], row["pillow_images_per_s"]
        g_cpu = _fmt(row.get("gpuimages_cpu_ms_per_image"), ".2f")
        p_cpu = _fmt(row.get("pillow_cpu_ms_per_image"), ".2f")
        lines.append(f"{row['workers']:>7} {g:>16.0f} {p:>13.0f} {g / p * 100:>6.0f}% {g / base:>8.2f}x "
                     f"{g_cpu:>10} {p_cpu:>10}")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed
        return None


def machine_info(java_version: str | None = None, gpus: list[str] | None = None) -> dict:
    """Cores, CPU model, memory, load and library versions of this machine."""
    mem = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": mem,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "java": java_version,
        "gpus": gpus or [],
        "versions": {m: _version(m) for m in ("pyspark", "pyarrow", "pillow", "numpy", "pandas",
                                                "nvidia-dali-cuda120", "gpuimages")},
    }


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def _colour(result: Result) -> str:
    if result.key.startswith("gpuimages") or result.key.startswith("decode_images"):
        return "#DD8452"  # gpuimages
    if result.kind == "ceiling" or result.key == "spark_floor":
        return "#BBBBBB"  # ceilings and the Spark floor
    return "#4C72B0"  # other Spark readers


def write_chart(path: str | os.PathLike, results: list[Result], title: str) -> Path | None:
    """A horizontal bar chart of images/s (ceilings shaded); None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("report: matplotlib is not installed; skipping the chart (pip install 'gpuimages[bench]')")
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(reversed(results))
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(rows) + 1.5))
    bars = ax.barh([r.label for r in rows], [r.images_per_s for r in rows], color=[_colour(r) for r in rows])
    for bar, r in zip(bars, rows, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {r.images_per_s:.0f}", va="center", fontsize=8)
    ax.set_xlabel("images / s (best pass)")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.12)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
