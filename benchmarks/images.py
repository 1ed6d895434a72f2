"""Make the benchmark image set: six real photos as 640x480 JPEGs (quality 90).

    python benchmarks/images.py bench-images/

The photos ship with scikit-image (chelsea, coffee, astronaut, motorcycle_left, rocket)
and matplotlib (grace_hopper), so anyone can make the same set again. Each is cut to
4:3 around its centre and resized, so every request carries a typical camera-sized
image rather than whatever size the sample happened to have.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageOps

SIZE = (640, 480)
QUALITY = 90
SKIMAGE_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png", "rocket.jpg")


def photo_sources() -> list[Path]:
    """The original photos, from the installed scikit-image and matplotlib."""
    import matplotlib
    import skimage

    skimage_data = Path(skimage.__file__).parent / "data"
    matplotlib_data = Path(matplotlib.get_data_path()) / "sample_data"
    return [skimage_data / name for name in SKIMAGE_PHOTOS] + [matplotlib_data / "grace_hopper.jpg"]


def make_images(folder: Path) -> list[Path]:
    """Write the set into `folder` (created if needed) and return the files' paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for source in photo_sources():
        with Image.open(source) as photo:
            fitted = ImageOps.fit(photo.convert("RGB"), SIZE, Image.Resampling.LANCZOS)
        path = folder / f"{source.stem}.jpg"
        fitted.save(path, "JPEG", quality=QUALITY)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where to write the JPEGs")
    args = parser.parse_args()
    for path in make_images(args.folder):
        print(f"{path}  {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
