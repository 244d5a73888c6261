"""python -m engine.track: track objects through a video and write masks people can use.

    python -m engine.track --config configs/openvino-cpu.yaml --video clip.mp4 \\
        --obj-id 1 --point 420,250 --obj-id 2 --box 100,80,300,260 --out out/

--frame and --obj-id apply to the prompts that follow them (defaults: frame 0, object 1). Outputs under
--out: masks/NNNNN.png (indexed, palette colour per object id), masks.json (COCO RLE, pycocotools
format), overlay.mp4, summary.json. Live sources (camera:N, rtsp://..., http://...) write as they go
and stop cleanly on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.cli import run_cli
from engine.errors import ConfigError, FrameDecodeError, InputError
from engine.live.readers import is_stream_url
from engine.outputs import OverlayWriter, RleWriter, atomic_write_bytes, indexed_png, label_image
from engine.prompts import Prompt, finalize_prompts, load_prompts_file, parse_box, parse_index, parse_point
from engine.video import FrameSource, open_video

log = logging.getLogger("engine.track")
DEFAULT_CONFIG = Path("configs/openvino-cpu.yaml")


class _PromptAction(argparse.Action):
    """Collect prompts in command-line order, each bound to the current --frame and --obj-id."""

    def __call__(self, parser, namespace, value, option_string=None):
        events = getattr(namespace, "events", None) or []
        events.append((self.dest, value))
        namespace.events = events


def add_prompt_arguments(p: argparse.ArgumentParser) -> None:
    """--frame, --obj-id, --point, --box, --mask (in command-line order) and --prompts; read them back
    with collect_prompts."""
    for flag, dest, helptext in (("--frame", "frame", "frame index of the prompts that follow (default 0)"),
                                 ("--obj-id", "obj_id", "object id of the prompts that follow (default 1)"),
                                 ("--point", "point", "X,Y[,LABEL] click in video pixels; label 1 (default) or 0"),
                                 ("--box", "box", "X0,Y0,X1,Y1 box in video pixels"),
                                 ("--mask", "mask", "PNG mask (nonzero = object) at the video's size")):
        p.add_argument(flag, dest=dest, action=_PromptAction, help=helptext)
    p.add_argument("--prompts", type=Path, help="YAML/JSON list of {frame, obj_id, points, labels, box, mask}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.track", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help=f"deployment YAML (default {DEFAULT_CONFIG})")
    p.add_argument("--model", type=Path, help="model set folder (default: the config's)")
    p.add_argument("--video", required=True, help="video file, image folder, camera:N or a stream URL")
    add_prompt_arguments(p)
    p.add_argument("--reverse", action="store_true", help="track backwards from the last prompted frame")
    p.add_argument("--start-frame", type=int, help="first frame to track (default: the first/last prompted one)")
    p.add_argument("--max-frames", type=int, help="track at most this many frames after the start")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--no-png", action="store_true", help="do not write per-frame PNG masks")
    p.add_argument("--no-video", action="store_true", help="do not write the overlay video")
    p.add_argument("--skip-bad-frames", action="store_true",
                   help="replace frames that cannot be decoded by the previous frame, with a warning "
                        "(default: stop with the frame number)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def collect_prompts(args: argparse.Namespace) -> list[Prompt]:
    frame, obj_id = 0, 1
    found: list[Prompt] = []
    for kind, value in getattr(args, "events", None) or []:
        if kind == "frame":
            frame = parse_index(value, "--frame")
        elif kind == "obj_id":
            obj_id = parse_index(value, "--obj-id", lo=1)
        elif kind == "point":
            xy, label = parse_point(value)
            found.append(Prompt(frame, obj_id, points=[xy], labels=[label]))
        elif kind == "box":
            found.append(Prompt(frame, obj_id, box=parse_box(value)))
        elif kind == "mask":
            found.append(Prompt(frame, obj_id, mask=Path(value)))
    if args.prompts:
        found += load_prompts_file(args.prompts)
    return finalize_prompts(found)


def read_mask(path: Path, video_hw: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"mask file not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot read mask {path}: not an image")
    mask = (img.max(axis=2) if img.ndim == 3 else img) > 0
    if mask.shape != tuple(video_hw):
        raise InputError(f"mask {path} is {mask.shape[1]} x {mask.shape[0]}, the video is "
                         f"{video_hw[1]} x {video_hw[0]}")
    if not mask.any():
        raise InputError(f"mask {path} is empty: no pixel is set")
    return mask


def apply_prompt(tracker, state, p: Prompt, video_hw: tuple[int, int]):
    if p.mask is not None:
        return tracker.add_new_mask(state, p.frame, p.obj_id, read_mask(p.mask, video_hw))
    return tracker.add_new_points_or_box(state, p.frame, p.obj_id,
                                         points=p.points or None, labels=p.labels or None, box=p.box)


class Outputs:
    def __init__(self, out: Path, video_hw: tuple[int, int], fps: float, source: str, png: bool, video: bool,
                 streaming: bool) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.video_hw = tuple(video_hw)
        self.masks_dir = out / "masks" if png else None
        if self.masks_dir:
            self.masks_dir.mkdir(exist_ok=True)
        self.rle = RleWriter(out, video_hw, source, streaming)
        self.overlay = OverlayWriter(out / "overlay.mp4", video_hw, fps) if video else None
        self.present: dict[int, int] = {}
        self.frames = 0

    def add(self, frame_idx: int, frame: np.ndarray, result) -> None:
        if self.masks_dir:
            atomic_write_bytes(self.masks_dir / f"{frame_idx:05d}.png",
                               indexed_png(label_image(result.masks, result.obj_ids)))
        self.rle.add(frame_idx, result.obj_ids, result.masks, result.object_scores)
        if self.overlay:
            self.overlay.add(frame, result.obj_ids, result.masks)
        for obj_id, mask in zip(result.obj_ids, result.masks, strict=True):
            self.present[obj_id] = self.present.get(obj_id, 0) + int(mask.any())
        self.frames += 1

    def close(self, complete: bool) -> list[str]:
        files = [str(self.rle.close(complete))]
        if self.overlay:
            files.append(str(self.overlay.close(complete)))
        if self.masks_dir:
            files.append(str(self.masks_dir) + "/")
        return files


class TolerantSource(FrameSource):
    """Wraps a frame source: an undecodable frame is replaced by the last good one, with a warning."""

    def __init__(self, inner: FrameSource) -> None:
        super().__init__()
        self.inner = inner
        self.num_frames, self.height, self.width = inner.num_frames, inner.height, inner.width
        self.fps = getattr(inner, "fps", None)
        self.bad: list[int] = []
        self.errors: dict[int, str] = {}
        self._last: np.ndarray | None = None

    def _load(self, index: int) -> np.ndarray:
        try:
            frame = self.inner.get(index)
        except FrameDecodeError as exc:
            if self._last is None:
                raise
            log.warning("%s; using the previous frame instead", exc)
            self.bad.append(index)
            self.errors[index] = str(exc)
            return self._last
        self._last = frame
        return frame

    def close(self) -> None:
        super().close()
        self.inner.close()


def track_offline(args, tracker, prompts: list[Prompt]) -> dict[str, Any]:
    source: FrameSource = open_video(args.video)
    if args.skip_bad_frames:
        source = TolerantSource(source)
    n = source.num_frames
    for p in prompts:
        if p.frame >= n:
            raise InputError(f"prompt on frame {p.frame}, but the video has {n} frames (0 to {n - 1})")
    state = tracker.init_state(source)
    for p in prompts:
        apply_prompt(tracker, state, p, state.video_hw)
    fps = float(getattr(source, "fps", 0) or 25.0)
    outputs = Outputs(args.out, state.video_hw, fps, str(args.video), not args.no_png, not args.no_video, False)
    start = args.start_frame
    if start is None:
        start = max(p.frame for p in prompts) if args.reverse else min(p.frame for p in prompts)
    complete = False
    t0 = time.perf_counter()
    bar = None
    try:
        frames = tracker.propagate_in_video(state, start_frame_idx=start, max_frame_num_to_track=args.max_frames,
                                            reverse=args.reverse)
        if not args.quiet:
            from tqdm import tqdm

            total = (start + 1 if args.reverse else n - start)
            if args.max_frames is not None:
                total = min(total, args.max_frames + 1)
            bar = tqdm(frames, total=total, desc="tracking", unit="frame")
            frames = bar
        for result in frames:
            outputs.add(result.frame_idx, state.source.get(result.frame_idx), result)
        complete = True
    finally:
        if bar is not None:
            bar.close()
        files = outputs.close(complete)
        summary = _summary(args, outputs, files, time.perf_counter() - t0, complete,
                           getattr(source, "bad", []), tracker)
        errors = getattr(source, "errors", {})
        summary["bad_frames"] = [{"frame": i, "error": errors[i]} for i in sorted(errors)]
        summary["memory"] = {"stored_frames": state.stored_frames(), "bytes": state.memory_bytes()}
        _write_summary(args.out, summary)
    return summary


def track_live(args, tracker, prompts: list[Prompt]) -> dict[str, Any]:
    """Track a camera or stream: a capture thread keeps the newest frame, so results never fall behind the
    source by more than one tracking time (frames that arrive meanwhile are dropped and counted)."""
    from engine.live import Capture, LiveSession
    from engine.live.redact import redact_url

    name = redact_url(args.video)
    capture = Capture(args.video, policy="latest", name=name, retry_first_open=False).start()
    session = LiveSession(tracker, name=name, held_frames=4)
    pending = list(prompts)
    outputs = None
    latencies: list[float] = []
    t0 = time.perf_counter()
    stopped_by = "end of stream"
    try:
        for frame in capture.frames():
            result = session.track(frame)
            for p in [p for p in pending if p.frame <= frame.frame_id]:  # prompts apply when their frame arrives
                pending.remove(p)
                mask = read_mask(p.mask, frame.image.shape[:2]) if p.mask is not None else None
                result = session.prompt(frame.frame_id, p.obj_id, points=p.points or None, labels=p.labels or None,
                                        box=p.box, mask=mask)
            if outputs is None:
                outputs = Outputs(args.out, frame.image.shape[:2], capture_fps(capture), name,
                                  not args.no_png, not args.no_video, True)
            outputs.add(frame.frame_id, *at_size(frame.image, result, outputs.video_hw))
            latencies.append(result.latency_s)
            if args.max_frames is not None and outputs.frames >= args.max_frames:
                stopped_by = f"--max-frames {args.max_frames}"
                break
            if not args.quiet and outputs.frames % 25 == 1:
                print(f"frame {frame.frame_id}: {outputs.frames / (time.perf_counter() - t0):.2f} fps tracked, "
                      f"{capture.dropped} dropped, latency {1000 * result.latency_s:.0f} ms", file=sys.stderr)
    except KeyboardInterrupt:
        stopped_by = "Ctrl-C"
    finally:
        capture.stop()
        files = outputs.close(True) if outputs else []
    if outputs is None:
        raise InputError(f"live source {name} gave no frame"
                         + (f": {capture.last_error}" if capture.last_error else ""))
    summary = _summary(args, outputs, files, time.perf_counter() - t0, True, [], tracker)
    summary["stopped_by"] = stopped_by
    summary["live"] = {"frames_in": capture.frames_in, "dropped": capture.dropped, "reconnects": capture.reconnects,
                       "size_changes": session.size_changes,
                       "latency_ms": {"p50": round(1000 * float(np.percentile(latencies, 50)), 1),
                                      "p95": round(1000 * float(np.percentile(latencies, 95)), 1),
                                      "max": round(1000 * max(latencies), 1)}}
    _write_summary(args.out, summary)
    return summary


def at_size(image: np.ndarray, result, hw: tuple[int, int]):
    """A live frame and its result at the outputs' size (the first frame's): a camera that switched to
    another frame size goes on into the same overlay video and mask files, resized."""
    if image.shape[:2] == tuple(hw):
        return image, result
    import cv2

    from engine.live.session import ObjectResult

    resized = cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    objects = [ObjectResult(o.obj_id, o.present, o.score, None,
                            cv2.resize(o.mask.astype(np.uint8), (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST) > 0)
               for o in result.objects]
    return resized, type(result)(result.source, result.frame_id, result.captured_at, result.result_at, objects,
                                 result.kind)


def capture_fps(capture) -> float:
    """The overlay video's rate: what the source declares, else the rate frames arrive at (within what an
    mp4 writer takes), else 25."""
    fps = capture.source_fps or capture.fps_in
    return float(min(max(round(fps, 3), 1.0), 120.0)) if fps else 25.0


def _summary(args, outputs: Outputs, files: list[str], seconds: float, complete: bool, bad: list[int],
             tracker) -> dict[str, Any]:
    from engine.live.redact import redact

    return {"video": redact(str(args.video)), "complete": complete, "frames": outputs.frames,
            "seconds": round(seconds, 2), "fps": round(outputs.frames / seconds, 3) if seconds > 0 else None,
            "objects": {str(k): {"frames_present": v} for k, v in sorted(outputs.present.items())},
            "bad_frames_replaced": bad, "outputs": files, "model": tracker.describe()}


def _write_summary(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=1, default=str).encode())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.max_frames is not None and args.max_frames < 0:
        raise ConfigError("--max-frames must be 0 or more")
    prompts = collect_prompts(args)
    config = args.config or DEFAULT_CONFIG
    if args.config is None and not config.is_file():
        raise ConfigError(f"no --config given and {DEFAULT_CONFIG} does not exist here")
    if not is_stream_url(args.video):
        open_video(args.video).close()  # a bad video fails before the models load
    from engine.config import load_config
    from engine.tracker import Tracker

    tracker = Tracker.from_config(load_config(config), model=args.model, verify_checksums=True)
    interrupted = False
    try:
        summary = track_live(args, tracker, prompts) if is_stream_url(args.video) else track_offline(args, tracker, prompts)
    except KeyboardInterrupt:
        interrupted = True
        summary = json.loads((args.out / "summary.json").read_text()) if (args.out / "summary.json").is_file() else {}
    state = "interrupted: outputs marked incomplete" if interrupted else (
        "complete" if summary.get("complete") else "incomplete")
    print(f"{summary.get('frames', 0)} frames in {summary.get('seconds', 0)} s "
          f"({summary.get('fps') or 0:.2f} fps), {state}")
    for obj_id, info in summary.get("objects", {}).items():
        print(f"  object {obj_id}: present on {info['frames_present']} frames")
    if summary.get("bad_frames_replaced"):
        print(f"  frames that could not be decoded (replaced by the previous one): {summary['bad_frames_replaced']}")
    print(f"  outputs: {', '.join(summary.get('outputs', []))}, {args.out / 'summary.json'}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
