"""python -m engine.export: write a model set from an official checkpoint or seeded random weights."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine.cli import peak_rss_mb, run_cli
from engine.errors import ExportError
from engine.export.build import SUPPORTED_IMAGE_SIZES
from engine.static import DEFAULT_COND_FRAMES, DEFAULT_POINTS
from engine.variants import DEFAULT_VARIANT, VARIANTS, get_variant


def default_out(variant: str, image_size: int, static: bool = False) -> Path:
    suffix = ("" if image_size == 1024 else f"_{image_size}") + ("_static" if static else "")
    return Path("models") / f"{variant}{suffix}"


def _parse_set(values: list[str]) -> dict[str, float]:
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ExportError(f"--set expects PARAM=NUMBER, got {item!r}") from None
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine.export",
        description="Export SAM 2 as four ONNX stage models plus constants and a manifest (a model set).",
    )
    p.add_argument("--variant", default=DEFAULT_VARIANT, help=f"one of: {', '.join(VARIANTS)}")
    p.add_argument("--out", type=Path, help="output directory (default: models/<variant>[_<size>])")
    p.add_argument("--image-size", type=int, default=1024, choices=SUPPORTED_IMAGE_SIZES,
                   help="model input size; 1024 is Meta's, 512 a lighter deployment size, 256 the test "
                        "suite's size (fast pipeline checks, not for deployment)")
    p.add_argument("--checkpoint", help="official checkpoint file (.pt, weights under 'model'), or `official`: "
                                        "download the publisher's checkpoint of --variant into the cache "
                                        "($SAM2_EDGE_CACHE; a mirror: $SAM2_EDGE_CHECKPOINT_URL)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights when no checkpoint is given")
    p.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                   help="fill a parameter with a constant after loading (testing aid), e.g. "
                        "sam_mask_decoder.pred_obj_score_head.layers.2.bias=5")
    p.add_argument("--mask-logit-offset", type=float, default=0.0, metavar="LOGIT",
                   help="random weights only: add this to every mask logit, so masks cover a moderate share "
                        "of the frame (the tests use -0.05); for fidelity and parity measurements")
    p.add_argument("--object-score-shift", type=float, default=0.0, metavar="LOGIT",
                   help="random weights only: shift the object-score head, so objects are found absent too")
    p.add_argument("--static", action="store_true",
                   help="fixed shapes for NPUs, TensorRT and CUDA graphs: memory attention over a fixed number "
                        "of memory and pointer slots, the decoder over a fixed number of point slots; empty "
                        "slots are masked, so results equal the dynamic set's")
    p.add_argument("--cond-slots", type=int, default=DEFAULT_COND_FRAMES, metavar="N",
                   help="with --static: prompted frames memory attention holds; configs must cap "
                        "tracker.max_cond_frames at N, and results depart from Meta's once a video has more "
                        f"prompted frames (default {DEFAULT_COND_FRAMES})")
    p.add_argument("--attention-tiers", metavar="K,K",
                   help="with --static: prompted-frame counts that get a memory-attention graph of their own; each "
                        "frame runs the smallest graph its selection fits, so a one-prompt video pays for no empty "
                        "prompted-frame slot (default: every count from 1 to --cond-slots; the cap always has one)")
    p.add_argument("--static-points", type=int, default=DEFAULT_POINTS, metavar="K",
                   help=f"with --static: clicks and box corners one prompt may have (default {DEFAULT_POINTS})")
    p.add_argument("--attention-blocks", type=int, default=1, metavar="N",
                   help="memory attention in N blocks of queries: the same results with an N times smaller score "
                        "matrix. ONNX Runtime materialises it (a full SAM 2.1 bank at 1024: 2.6 GB peak; 16 blocks: "
                        "0.9 GB); OpenVINO's fused attention does not, and runs slower in blocks (default 1)")
    p.add_argument("--verify", action="store_true",
                   help="compare every stage on ONNX Runtime CPU and OpenVINO CPU f32 with PyTorch")
    p.add_argument("--report", type=Path, help="with --verify: write the parity table as JSON here")
    p.add_argument("--force", action="store_true", help="replace the contents of a non-empty output directory")
    return p


def _parse_tiers(text: str, cond_slots: int) -> list[int]:
    """Checked before the slow build: counts from 1 to --cond-slots."""
    try:
        tiers = [int(x) for x in text.split(",")]
    except ValueError:
        tiers = []
    if not tiers or not all(1 <= k <= cond_slots for k in tiers):
        raise ExportError(f"--attention-tiers {text!r}: expected a comma list of prompted-frame counts from 1 to "
                          f"--cond-slots {cond_slots}, e.g. 1,{cond_slots}")
    return tiers


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    variant = get_variant(args.variant)
    out = args.out or default_out(variant.name, args.image_size, args.static)
    given = [f for f, v in (("--cond-slots", args.cond_slots != DEFAULT_COND_FRAMES),
                            ("--static-points", args.static_points != DEFAULT_POINTS),
                            ("--attention-tiers", args.attention_tiers is not None)) if v]
    if not 1 <= args.attention_blocks <= 64:
        raise ExportError(f"--attention-blocks must lie between 1 and 64, got {args.attention_blocks}")
    if given and not args.static:
        raise ExportError(f"{' and '.join(given)} only apply to a static set; add --static")
    tiers = None if args.attention_tiers is None else _parse_tiers(args.attention_tiers, args.cond_slots)

    from engine.export.build import Calibration, build_model
    from engine.export.exporter import export_model_set, prepare_output_dir

    prepare_output_dir(out, args.force)  # fail before the slow part
    t0 = time.perf_counter()
    what = f"checkpoint {args.checkpoint}" if args.checkpoint else f"random weights (seed {args.seed})"
    print(f"building {variant.name} at {args.image_size}x{args.image_size} from {what}")
    calibration = None
    if args.mask_logit_offset or args.object_score_shift:
        calibration = Calibration(args.mask_logit_offset, args.object_score_shift)
    checkpoint, download = args.checkpoint, None
    if checkpoint == "official":
        from engine.export.checkpoints import fetch_official

        download = fetch_official(variant.name, progress=True)
        checkpoint = download.path
        how = "in the cache" if download.cached else (f"resumed at {download.resumed_from} bytes" if
                                                      download.resumed_from else "downloaded")
        print(f"checkpoint {download.path} ({download.bytes / 2**20:.1f} MB, {how}) from {download.url}")
    try:
        built = build_model(variant, args.image_size, None if checkpoint is None else Path(checkpoint), args.seed,
                            _parse_set(args.set), calibration)
    except ExportError:
        if download is not None:  # not this variant's checkpoint: do not keep it as if it were
            download.path.unlink(missing_ok=True)
            print(f"removed {download.path} from the cache: it is not {variant.name}'s checkpoint", file=sys.stderr)
        raise
    if download is not None:
        built.weights.update({"source_url": download.url})
    static = None
    if args.static:
        from engine.static import StaticShapes

        static = StaticShapes.for_model(built.model.num_maskmem, built.model.max_obj_ptrs_in_encoder,
                                        args.cond_slots, args.static_points, tiers)
        print(f"static shapes: {static.memory_slots} memory slots ({static.cond_frames} prompted frames), "
              f"{static.pointer_slots} pointer slots, {static.points} point slots; memory attention for "
              + ", ".join(f"{t.cond_frames} prompted ({t.memory_slots}+{t.pointer_slots} slots)" for t in static.tiers))
    manifest = export_model_set(built, out, force=args.force, static=static, query_blocks=args.attention_blocks)
    elapsed = time.perf_counter() - t0
    sizes = {s.file: (out / s.file).stat().st_size / 1e6 for s in manifest.stages.values()}
    print(f"wrote {out}: " + ", ".join(f"{k} {v:.1f} MB" for k, v in sizes.items()))
    print(f"export took {elapsed:.1f} s, peak memory {peak_rss_mb():.0f} MB")
    if args.verify:
        from engine.export.verify import format_rows, verify_model_set, write_report
        from engine.modelset import ModelSet

        print("verifying stage parity (relative error = max |onnx - torch| / max |torch|)")
        rows = verify_model_set(built, ModelSet.load(out), log=print)
        print(format_rows(rows))
        worst = max(rows, key=lambda r: r.rel)
        print(f"worst relative error: {worst.rel:.2e} ({worst.stage}, {worst.case}, {worst.backend}, {worst.output})")
        if args.report:
            write_report(rows, args.report)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
