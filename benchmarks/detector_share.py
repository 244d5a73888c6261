"""The detector's share of the frame time on OpenVINO CPU: HOG, motion and a YOLO-sized ONNX detector
(YOLOv8n's shape of network, 640 x 640 in, [1, 84, 8400] out, random weights: cost only) beside tracking
one object with each model set given.

    python benchmarks/detector_share.py --model models/edgetam_512 --model models/fid512 \\
        --out benchmarks/detector/

Each model set is timed by `python -m engine.bench --backend openvino` (its own process, as always); the
detectors are timed here on the bench's synthetic 640 x 480 frames with `engine.bench.detector`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from engine.bench.detector import time_detector
from engine.bench.synthetic import SyntheticSource
from engine.detect.settings import parse_detector


def yolo_sized_onnx(path: Path) -> Path:
    """Conv-BN-SiLU stages as YOLOv8n's backbone widths (16 to 256 channels, strides 2 to 32), a head on the
    strides 8, 16 and 32 maps, 84 outputs per cell (4 box + 80 classes): about YOLOv8n's cost."""
    import torch
    from torch import nn

    def block(i, o, s):
        return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.SiLU(),
                             nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.SiLU())

    class Yolo(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = block(3, 16, 2)
            self.s2, self.s3 = block(16, 32, 2), block(32, 64, 2)
            self.s4, self.s5 = block(64, 128, 2), block(128, 256, 2)
            self.h3, self.h4, self.h5 = (nn.Sequential(block(c, c, 1), nn.Conv2d(c, 84, 1)) for c in (64, 128, 256))

        def forward(self, x):
            p3 = self.s3(self.s2(self.stem(x)))
            p4 = self.s4(p3)
            p5 = self.s5(p4)
            outs = [h(p).flatten(2) for h, p in ((self.h3, p3), (self.h4, p4), (self.h5, p5))]
            return torch.cat(outs, 2).sigmoid() * 640

    torch.manual_seed(0)
    model = Yolo().eval()
    torch.onnx.export(model, (torch.rand(1, 3, 640, 640),), str(path), input_names=["images"],
                      output_names=["output0"], opset_version=17, dynamo=False)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--frames", type=int, default=6)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    yolo = yolo_sized_onnx(args.out / "yolo-sized-random.onnx")
    frames = SyntheticSource(num_frames=16)
    detectors = {}
    for kind, extra in (("hog-people", {}), ("motion", {}),
                        ("onnx", {"model": str(yolo), "backend": {"name": "openvino", "device": "CPU"},
                                  "score_threshold": 2.0})):  # cost only: random scores, nothing kept
        detectors[kind if kind != "onnx" else "yolo-sized onnx"] = time_detector(
            parse_detector({"kind": kind, **extra}, None, "bench"), frames, frames=args.frames)
    table = []
    for model in args.model:
        out = args.out / model.name
        subprocess.run([sys.executable, "-m", "engine.bench", "--backend", "openvino", "--model", str(model),
                        "--frames", str(args.frames), "--warmup", "8", "--out", str(out)], check=True)
        run = json.loads((out / "report.json").read_text())["runs"][0]
        frame = run["steady"]["frame"]["median_ms"]
        for name, d in detectors.items():
            table.append({"model": model.name, "frame_ms": frame, "detector": name, "detector_ms": d["median_ms"],
                          "share_every_frame": round(d["median_ms"] / (d["median_ms"] + frame), 4),
                          "share_every_5th": round(d["median_ms"] / 5 / (d["median_ms"] / 5 + frame), 4)})
    (args.out / "detector_share.json").write_text(json.dumps({"detectors": detectors, "table": table}, indent=1))
    print(f"{'model':<16} {'frame ms':>9} {'detector':<18} {'det ms':>7} {'every frame':>12} {'every 5th':>10}")
    for r in table:
        print(f"{r['model']:<16} {r['frame_ms']:>9.1f} {r['detector']:<18} {r['detector_ms']:>7.1f} "
              f"{100 * r['share_every_frame']:>11.1f}% {100 * r['share_every_5th']:>9.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
