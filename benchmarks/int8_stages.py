"""Which stages of a model set keep their masks in int8: each stage quantized alone (and any combination
asked for), judged by `engine.fidelity` against the exact run on clips the calibration did not see.

    python benchmarks/int8_stages.py --model models/edgetam_512 --out benchmarks/int8-avx2/edgetam512
    python benchmarks/int8_stages.py --model models/fid512 --stages image_encoder,memory_encoder \\
        --combos image_encoder+memory_encoder --out benchmarks/int8-avx2/fid512

For each choice it runs `python -m engine.quantize` (calibrated on `--calibration` from `--calib-frame` /
`--calib-point`, `--calib-frames` frames) and then `python -m engine.fidelity` on every judging clip, with
the candidate on OpenVINO CPU and the exact run the float set on OpenVINO CPU f32 with float32 memory.
Writes `<out>/<choice>-<clip>.json` (engine.fidelity's report) and `<out>/summary.json` / `summary.md`
(min and mean IoU per clip and direction, presence disagreements). Speed is `engine.bench`'s business:
time the sets this writes with `python -m engine.bench --model <set> --compare-model <float set>`.

Run it with your checkpoint's model set: on seeded random weights this is a proxy (their masks are
noise-like, which makes IoU harsh), and whether int8 holds on trained weights must be measured on them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# clip name -> (video, prompt frame, click): the fidelity section's prompts
CLIPS = {"davis": (DATA / "davis-car-shadow" / "frames", 20, "420,250"),
         "bedroom": (DATA / "videos" / "bedroom.mp4", 100, "480,270")}


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=False)  # engine.fidelity exits 1 below --min-iou: the report is still written


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="the float model set")
    p.add_argument("--stages", default="image_encoder,memory_encoder,mask_decoder,memory_attention",
                   help="stages to quantize one at a time")
    p.add_argument("--combos", default="", help="comma list of stage combinations to quantize together, a+b")
    p.add_argument("--calibration", type=Path, default=CLIPS["bedroom"][0])
    p.add_argument("--calib-frame", type=int, default=CLIPS["bedroom"][1])
    p.add_argument("--calib-point", default=CLIPS["bedroom"][2])
    p.add_argument("--calib-frames", type=int, default=32)
    p.add_argument("--clips", default="davis,bedroom", help="judging clips: davis, bedroom")
    p.add_argument("--max-frames", type=int, default=60, help="frames tracked after the prompt on each clip")
    p.add_argument("--direction", default="forward", choices=("forward", "reverse", "both"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    choices = [s for s in args.stages.split(",") if s] + [c for c in args.combos.split(",") if c]
    summary = []
    for choice in choices:
        tag = choice.replace("+", "-")
        int8 = args.model.parent / f"{args.model.name}_int8_{tag}"
        if not (int8 / "modelset.yaml").is_file():
            run([sys.executable, "-m", "engine.quantize", "--model", str(args.model), "--calibration",
                 str(args.calibration), "--frame", str(args.calib_frame), "--point", args.calib_point, "--frames",
                 str(args.calib_frames), "--stages", choice.replace("+", ","), "--out", str(int8), "--force",
                 "--quiet"])
        config = args.out / f"{tag}.yaml"
        config.write_text(f"# {choice} in int8 (engine.quantize on {args.calibration.name} frames "
                          f"{args.calib_frame}-{args.calib_frame + args.calib_frames - 1}), the rest f32; "
                          f"OpenVINO CPU\nmodel: {int8.resolve()}\n"
                          f"backend: {{name: openvino, device: CPU, precision: f32, threads: {args.threads}}}\n"
                          f"tracker: {{memory_dtype: float32}}\n")
        row = {"int8": choice, "set": str(int8)}
        for clip in [c for c in args.clips.split(",") if c]:
            video, frame, point = CLIPS[clip]
            out = args.out / f"{tag}-{clip}"
            run([sys.executable, "-m", "engine.fidelity", "--candidate", str(config), "--video", str(video),
                 "--frame", str(frame), "--point", point, "--direction", args.direction, "--max-frames",
                 str(args.max_frames), "--out", str(out), "--quiet"])
            report = json.loads((out / "fidelity.json").read_text())
            row[clip] = {d: {k: v[k] for k in ("min_iou", "mean_iou", "presence_disagreements") if k in v}
                         for d, per in report["directions"].items() for v in per.values()}
        summary.append(row)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = ["| int8 stages | " + " | ".join(f"{c} min / mean IoU" for c in args.clips.split(",")) + " |",
             "| --- |" + " --- |" * len(args.clips.split(","))]
    for row in summary:
        cells = []
        for clip in args.clips.split(","):
            per = row.get(clip, {})
            cells.append(", ".join(f"{v['min_iou']:.4f} / {v['mean_iou']:.4f}" for v in per.values()) or "-")
        lines.append(f"| {row['int8']} | " + " | ".join(cells) + " |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
