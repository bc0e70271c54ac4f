"""Seeded synthetic data sets: ImageNet-sized JPEGs and a smaller PNG set, cached on disk.

Images are smooth colour gradients with blurred low-frequency noise, a few soft-edged shapes and a
little fine grain, so JPEGs at quality 90 compress like photos (about 25-35 KB at ~500x375).
A set lives in ``<root>/<key>/images`` with ``<root>/<key>/manifest.json`` beside it (outside the
image folder, so Spark's readers see images only); a folder with the same parameters is reused.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

log = logging.getLogger(__name__)

#: Default cache folder for generated sets.
DEFAULT_ROOT = Path("/tmp/gpuimages-bench")
#: Bump when the generator changes so stale caches are not reused.
GENERATOR_VERSION = 1
#: Nominal ImageNet-like size (height, width); each image varies around it.
NOMINAL_SIZE = (375, 500)


@dataclass(frozen=True)
class SetSpec:
    """Parameters of a generated set; equal specs give byte-identical files."""

    fmt: str  # "jpeg", "png" or "photo" (JPEG crops of real photographs, see :func:`photo_rgb`)
    count: int
    seed: int = 0
    quality: int = 90  # JPEG only
    size: tuple[int, int] = NOMINAL_SIZE  # nominal (height, width)
    rgba_share: float = 0.0  # PNG only: share of images with an alpha channel

    def key(self) -> str:
        """Folder name encoding every parameter."""
        h, w = self.size
        extra = f"q{self.quality}" if self.fmt in ("jpeg", "photo") else f"a{int(self.rgba_share * 100)}"
        return f"{self.fmt}-n{self.count}-s{self.seed}-{h}x{w}-{extra}-v{GENERATOR_VERSION}"


@dataclass
class DataSet:
    """A generated set on disk: its folder, files and the sizes needed to check readers' output."""

    spec: SetSpec
    folder: Path  # the images folder (what readers are pointed at)
    files: list[str]  # file names, sorted
    encoded_bytes: list[int]
    shapes: list[tuple[int, int, int]]  # (height, width, channels) as Spark's image source gives them
    meta: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Number of files."""
        return len(self.files)

    @property
    def total_bytes(self) -> int:
        """Encoded bytes of all files."""
        return sum(self.encoded_bytes)

    @property
    def mean_kb(self) -> float:
        """Mean encoded file size in KB (1000 bytes)."""
        return self.total_bytes / max(self.count, 1) / 1e3

    @property
    def decoded_bytes(self) -> int:
        """Pixel bytes of a full decode (Spark's channels: 3 for RGB, 4 with alpha)."""
        return sum(h * w * c for h, w, c in self.shapes)

    def resized_bytes(self, size: tuple[int, int]) -> int:
        """Pixel bytes after resizing every image to ``(height, width)``."""
        return sum(size[0] * size[1] * c for _, _, c in self.shapes)

    def paths(self) -> list[str]:
        """Absolute paths of the files."""
        return [str(self.folder / name) for name in self.files]

    def summary(self) -> dict:
        """JSON-friendly description (no per-file lists)."""
        return {
            **asdict(self.spec),
            "folder": str(self.folder),
            "count": self.count,
            "total_bytes": self.total_bytes,
            "mean_kb": round(self.mean_kb, 2),
            "mean_height": round(float(np.mean([s[0] for s in self.shapes])), 1) if self.shapes else 0,
            "mean_width": round(float(np.mean([s[1] for s in self.shapes])), 1) if self.shapes else 0,
        }


def image_size(rng: np.random.Generator, nominal: tuple[int, int]) -> tuple[int, int]:
    """A (height, width) around ``nominal``: width within about +-12%, aspect near 4:3, 15% portrait."""
    nh, nw = nominal
    w = max(8, int(round(nw * rng.uniform(0.88, 1.08))))
    h = max(8, int(round(w * nh / nw * rng.uniform(0.92, 1.08))))
    return (w, h) if rng.random() < 0.15 else (h, w)


def _upsampled_noise(rng: np.random.Generator, h: int, w: int, step: int, sigma: float) -> np.ndarray:
    small = rng.normal(0, sigma, (max(2, h // step), max(2, w // step))).astype(np.float32)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def synth_rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A natural-looking RGB image: gradient + blurred blobs + soft shapes + fine grain."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * x / width + np.sin(angle) * y / height
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c0 + t[..., None] * (c1 - c0)
    for c in range(3):
        img[..., c] += _upsampled_noise(rng, height, width, 40, 40.0)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(8, max(9, width // 2)))
        y1 = y0 + int(rng.integers(8, max(9, height // 2)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            pts = list(zip(rng.integers(0, width, 4).tolist(), rng.integers(0, height, 4).tolist(), strict=True))
            draw.polygon(pts, fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.8, 2.0))))
    arr = np.asarray(im).astype(np.float32)
    arr += _upsampled_noise(rng, height, width, 4, 4.0)[..., None]
    arr += rng.normal(0, 1.0, (height, width, 1)).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _alpha(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    a = 128 + 127 * np.sin(x / width * rng.uniform(1, 6)) * np.cos(y / height * rng.uniform(1, 6))
    return np.clip(a, 0, 255).astype(np.uint8)


#: Colour photographs shipped in scikit-image's wheel (``skimage/data``), the source of "photo" sets.
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "hubble_deep_field.jpg",
          "retina.jpg", "ihc.png", "color.png")


def _photo_folder() -> Path:
    try:
        import skimage
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('"photo" sets crop scikit-image\'s photographs: pip install "gpuimages[bench]"') from exc
    return Path(skimage.__file__).parent / "data"


def photo_rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A ``(height, width)`` RGB crop of a real photograph: a seeded photo, crop box and flip, resized
    (Lanczos) to the size, with a little sensor-like grain. Decodes like a photo, unlike smooth synthetics."""
    name = PHOTOS[int(rng.integers(0, len(PHOTOS)))]
    with Image.open(_photo_folder() / name) as im:
        photo = im.convert("RGB")
    pw, ph = photo.size
    aspect = width / height
    crop_w = int(min(pw, ph * aspect) * rng.uniform(0.55, 1.0))
    crop_h = max(8, int(crop_w / aspect))
    crop_w = max(8, min(crop_w, pw))
    crop_h = min(crop_h, ph)
    left, top = int(rng.integers(0, pw - crop_w + 1)), int(rng.integers(0, ph - crop_h + 1))
    region = photo.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        region = region.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.asarray(region.resize((width, height), Image.LANCZOS)).astype(np.float32)
    arr += rng.normal(0, 2.0, (height, width, 1)).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8)


def encode_one(spec: SetSpec, index: int) -> tuple[bytes, tuple[int, int, int]]:
    """Encode image ``index`` of ``spec``; deterministic per (seed, index). Returns bytes and Spark's shape."""
    rng = np.random.default_rng([spec.seed, index, {"jpeg": 0, "png": 1, "photo": 2}[spec.fmt]])
    h, w = image_size(rng, spec.size)
    buf = io.BytesIO()
    if spec.fmt == "photo":
        quality = int(rng.integers(75, 96)) if spec.quality <= 0 else spec.quality
        Image.fromarray(photo_rgb(rng, h, w)).save(buf, "JPEG", quality=quality)
        return buf.getvalue(), (h, w, 3)
    rgb = synth_rgb(rng, h, w)
    if spec.fmt == "jpeg":
        Image.fromarray(rgb).save(buf, "JPEG", quality=spec.quality)
        return buf.getvalue(), (h, w, 3)
    if rng.random() < spec.rgba_share:
        rgba = np.concatenate([rgb, _alpha(rng, h, w)[..., None]], axis=2)
        Image.fromarray(rgba, "RGBA").save(buf, "PNG")
        return buf.getvalue(), (h, w, 4)
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue(), (h, w, 3)


def _write_chunk(spec: SetSpec, folder: str, indices: list[int]) -> list[tuple[str, int, tuple[int, int, int]]]:
    ext = "png" if spec.fmt == "png" else "jpg"
    out = []
    for i in indices:
        blob, shape = encode_one(spec, i)
        name = f"img{i:06d}.{ext}"
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(blob)
        out.append((name, len(blob), shape))
    return out


def _load(base: Path, spec: SetSpec) -> DataSet | None:
    manifest = base / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        meta = json.loads(manifest.read_text())
        if meta.get("key") != spec.key():
            return None
        files = [f["name"] for f in meta["files"]]
        folder = base / "images"
        if len(files) != spec.count or not all((folder / n).is_file() for n in files):
            return None
        return DataSet(
            spec,
            folder,
            files,
            [f["bytes"] for f in meta["files"]],
            [tuple(f["shape"]) for f in meta["files"]],
            {"reused": True},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_set(spec: SetSpec, root: str | os.PathLike = DEFAULT_ROOT, processes: int | None = None) -> DataSet:
    """Return the set for ``spec`` under ``root``, generating it (in ``processes`` processes) if absent."""
    base = Path(root) / spec.key()
    cached = _load(base, spec)
    if cached is not None:
        log.info("data: reusing %s (%d files, %.1f KB mean)", base, cached.count, cached.mean_kb)
        return cached
    tmp = Path(root) / f".{spec.key()}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    processes = processes or os.cpu_count() or 1
    chunks = [list(range(i, spec.count, processes)) for i in range(processes)]
    log.info("data: generating %d %s file(s) in %s", spec.count, spec.fmt, base)
    if processes > 1 and spec.count > 50:
        with ProcessPoolExecutor(processes) as pool:
            parts = list(pool.map(_write_chunk, [spec] * processes, [str(tmp / "images")] * processes, chunks))
    else:
        parts = [_write_chunk(spec, str(tmp / "images"), c) for c in chunks]
    rows = sorted((r for part in parts for r in part), key=lambda r: r[0])
    meta = {"key": spec.key(), "spec": asdict(spec), "files": [{"name": n, "bytes": b, "shape": s} for n, b, s in rows]}
    (tmp / "manifest.json").write_text(json.dumps(meta))
    shutil.rmtree(base, ignore_errors=True)
    tmp.rename(base)
    data = _load(base, spec)
    if data is None:  # pragma: no cover - only on a concurrent writer
        raise RuntimeError(f"data: could not read back the generated set in {base}")
    data.meta = {"reused": False}
    log.info("data: wrote %d files, %.1f KB mean", data.count, data.mean_kb)
    return data


def jpeg_set(count: int = 2000, *, seed: int = 0, quality: int = 90, root: str | os.PathLike = DEFAULT_ROOT,
             size: tuple[int, int] = NOMINAL_SIZE) -> DataSet:
    """The ImageNet-sized JPEG set (default 2000 files, quality 90)."""
    return ensure_set(SetSpec("jpeg", count, seed, quality, tuple(size)), root)


def png_set(count: int = 300, *, seed: int = 0, rgba_share: float = 0.25, root: str | os.PathLike = DEFAULT_ROOT,
            size: tuple[int, int] = NOMINAL_SIZE) -> DataSet:
    """The PNG set (default 300 files, a quarter with alpha)."""
    return ensure_set(SetSpec("png", count, seed, size=tuple(size), rgba_share=rgba_share), root)


def photo_set(count: int = 1000, *, seed: int = 0, quality: int = 0, root: str | os.PathLike = DEFAULT_ROOT,
              size: tuple[int, int] = NOMINAL_SIZE) -> DataSet:
    """JPEG crops of real photographs (scikit-image's), ImageNet-sized by default; ``quality=0`` draws
    a quality in 75..95 per file. ``size=(4000, 6000)`` gives camera-sized photos (memory benchmarks)."""
    return ensure_set(SetSpec("photo", count, seed, quality, tuple(size)), root)
