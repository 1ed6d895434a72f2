"""A checkpoint shaped as ModelScope's 万物识别, with random weights, for speed and memory.

    python benchmarks/wanwu_shape.py DIR

damo/cv_resnest101_general_recognition's layout (pytorch_model.pt, meta_info.txt,
configuration.json): ResNeSt-101 with a 2048 x 54,092 head, the weights random (seeded)
and the class names made up. Its answers mean nothing; its cost is the real model's. The
real checkpoint is a download this machine cannot make; `recognizer serve --model DIR`,
benchmarks/limit.py --model DIR and benchmarks/footprint.py --model DIR take either.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CLASSES = 54_092


def make(root: Path) -> None:
    import timm
    import torch

    torch.manual_seed(101)
    network = timm.create_model("resnest101e", num_classes=CLASSES)
    root.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), root / "pytorch_model.pt")
    names = "".join(f"{index:05d}\t类别{index:05d}\n" for index in range(CLASSES))
    (root / "meta_info.txt").write_text(names, encoding="utf-8")
    configuration = {"framework": "pytorch", "task": "general-recognition"}
    (root / "configuration.json").write_text(json.dumps(configuration), encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="the directory to make")
    make(parser.parse_args().dir)
