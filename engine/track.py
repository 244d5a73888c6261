"""python -m engine.track: track objects through a video and write masks people can use.

    python -m engine.track --config configs/openvino-cpu.yaml --video clip.mp4 \\
        --obj-id 1 --point 420,250 --obj-id 2 --box 100,80,300,260 --out out/

    python -m engine.track --video street.mp4 --detector hog-people --out out/    # nobody clicks

--frame and --obj-id apply to the prompts that follow them (defaults: frame 0, object 1). With a detector
(--detector, or the config's `detector:` section) objects are found and kept without prompts, prompts
are optional, and the outputs carry each object's label and the events. Outputs under
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
    d = p.add_argument_group("detector (objects found without prompts; overrides the config's detector:)")
    d.add_argument("--detector", choices=["onnx", "hog-people", "motion", "none"],
                   help="the detector; none: the config's detector is not used")
    d.add_argument("--detector-model", type=Path, help="--detector onnx: the detector's .onnx file")
    d.add_argument("--detect-every", type=int, help="run the detector on every N-th tracked frame")
    d.add_argument("--classes", help="comma list of wanted class names or ids (default: all)")
    d.add_argument("--detector-threshold", type=float, help="detections scoring below this are ignored")
    return p


def detector_settings(args: argparse.Namespace, cfg: Any):
    """The detector of this run: the command line's, else the config's, with the command line's overrides."""
    from dataclasses import replace

    from engine.detect.settings import parse_detector

    if args.detector == "none":
        return None
    overrides: dict[str, Any] = {}
    if args.detect_every is not None:
        overrides["every"] = args.detect_every
    if args.classes:
        overrides["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    if args.detector_threshold is not None:
        overrides["score_threshold"] = args.detector_threshold
    if args.detector is not None:
        d = {"kind": args.detector, **overrides}
        if args.detector_model is not None:
            d["model"] = str(args.detector_model)
        return parse_detector(d, Path.cwd(), "the command line", engine_backend=cfg.backend)
    if args.detector_model is not None:
        raise ConfigError("--detector-model needs --detector onnx")
    if cfg.detector is None:
        if overrides:
            flag = {"every": "--detect-every", "classes": "--classes",
                    "score_threshold": "--detector-threshold"}[next(iter(overrides))]
            raise ConfigError(f"{flag} needs a detector: --detector, or a detector: section in the config")
        return None
    checked = parse_detector({"kind": "motion", **overrides}, None, "the command line")  # the keys of every kind
    return replace(cfg.detector, **{k: getattr(checked, k) for k in overrides})


def collect_prompts(args: argparse.Namespace, optional: bool = False) -> list[Prompt]:
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
    if optional and not found:
        return []
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
        self.labels: dict[int, dict[str, Any]] = {}  # with a detector: each object's label and origin
        self.events: list[dict[str, Any]] = []
        self.beyond_png: set[int] = set()  # ids an 8-bit PNG cannot hold (a detector's, on long runs)
        self.frames = 0

    def add(self, frame_idx: int, frame: np.ndarray, result) -> None:
        """A frame's result: the tracker's FrameResult, or a LiveResult (streams, detector runs) whose
        objects carry their labels and whose frame carries events."""
        ids = list(result.obj_ids)
        masks = result.masks if ids else np.zeros((0, *self.video_hw), bool)
        if self.masks_dir:
            fits = [i for i, o in enumerate(ids) if o <= 255]
            self.beyond_png.update(o for o in ids if o > 255)
            atomic_write_bytes(self.masks_dir / f"{frame_idx:05d}.png",
                               indexed_png(label_image(masks[fits], [ids[i] for i in fits])
                                           if fits else np.zeros(self.video_hw, np.uint8)))
        objects = getattr(result, "objects", None)
        infos = [o.info for o in objects] if objects is not None else None
        events = [e.to_json() for e in getattr(result, "events", [])]
        self.rle.add(frame_idx, ids, masks, result.object_scores, infos, events)
        if self.overlay:
            self.overlay.add(frame, ids, masks)
        for i, (obj_id, mask) in enumerate(zip(ids, masks, strict=True)):
            self.present[obj_id] = self.present.get(obj_id, 0) + int(mask.any())
            if infos and infos[i]:
                self.labels[obj_id] = {"label": infos[i].get("label"), "origin": infos[i].get("origin")}
        self.events += events
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
        summary = _file_summary(args, outputs, files, time.perf_counter() - t0, complete, source, tracker, state)
    return summary


def track_and_prompt(session, frame, pending: list[Prompt]):
    """Track a frame of a session, then apply the prompts due on it (those of its frame or before, removed
    from `pending`); the frame's result keeps the events its tracking gave."""
    result = session.track(frame)
    events = result.events
    for p in [p for p in pending if p.frame <= frame.frame_id]:
        pending.remove(p)
        mask = read_mask(p.mask, frame.image.shape[:2]) if p.mask is not None else None
        result = session.prompt(frame.frame_id, p.obj_id, points=p.points or None, labels=p.labels or None,
                                box=p.box, mask=mask)
        result.events = events + result.events
    return result


def track_detected(args, tracker, prompts: list[Prompt], settings) -> dict[str, Any]:
    """A file with a detector: every frame in order through a live session (the stream's rules: a prompt on
    a tracked frame is a conditioning frame, memory stays bounded), the detector and the identity policy
    after each; prompts given apply on their frames."""
    from engine.detect import AutoPrompter
    from engine.live import CapturedFrame, LiveSession

    if args.reverse:
        raise InputError("--reverse cannot be used with a detector: objects are found as the video plays forward")
    source: FrameSource = open_video(args.video)
    if args.skip_bad_frames:
        source = TolerantSource(source)
    n = source.num_frames
    start = args.start_frame or 0
    if start >= n:
        raise InputError(f"--start-frame {start}, but the video has {n} frames (0 to {n - 1})")
    for p in prompts:
        if p.frame >= n:
            raise InputError(f"prompt on frame {p.frame}, but the video has {n} frames (0 to {n - 1})")
    end = n if args.max_frames is None else min(n, start + args.max_frames + 1)
    fps = float(getattr(source, "fps", 0) or 25.0)
    auto = AutoPrompter(settings)
    session = LiveSession(tracker, name=str(args.video), held_frames=1, max_objects=255, auto=auto)
    outputs = Outputs(args.out, (source.height, source.width), fps, str(args.video), not args.no_png,
                      not args.no_video, False)
    pending = list(prompts)
    complete = False
    t0 = time.perf_counter()
    frames: Any = range(start, end)
    if not args.quiet:
        from tqdm import tqdm

        frames = tqdm(frames, desc="tracking", unit="frame")
    try:
        for t in frames:
            image = source.get(t)
            result = track_and_prompt(session, CapturedFrame(t, t / fps, image), pending)
            outputs.add(t, image, result)
        complete = True
    finally:
        if hasattr(frames, "close"):
            frames.close()
        files = outputs.close(complete)
        summary = _file_summary(args, outputs, files, time.perf_counter() - t0, complete, source, tracker,
                                session.stream.state, detector={**auto.detector.describe(), **auto.status()})
        source.close()
    return summary


def track_live(args, tracker, prompts: list[Prompt], settings=None) -> dict[str, Any]:
    """Track a camera or stream: a capture thread keeps the newest frame, so results never fall behind the
    source by more than one tracking time (frames that arrive meanwhile are dropped and counted)."""
    from engine.live import Capture, LiveSession
    from engine.live.redact import redact_url

    name = redact_url(args.video)
    auto = None
    if settings is not None:
        from engine.detect import AutoPrompter

        auto = AutoPrompter(settings)
    capture = Capture(args.video, policy="latest", name=name, retry_first_open=False).start()
    session = LiveSession(tracker, name=name, held_frames=4, max_objects=255, auto=auto)
    pending = list(prompts)
    outputs = None
    latencies: list[float] = []
    t0 = time.perf_counter()
    stopped_by = "end of stream"
    try:
        for frame in capture.frames():
            result = track_and_prompt(session, frame, pending)
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
    if auto is not None:
        summary["detector"] = {**auto.detector.describe(), **auto.status()}
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
            "objects": {str(k): {"frames_present": v, **outputs.labels.get(k, {})}
                        for k, v in sorted(outputs.present.items())},
            **({"events": outputs.events} if outputs.events else {}),
            **({"ids_not_in_png_masks": sorted(outputs.beyond_png)} if outputs.beyond_png else {}),
            "bad_frames_replaced": bad, "outputs": files, "model": tracker.describe()}


def _file_summary(args, outputs: Outputs, files: list[str], seconds: float, complete: bool, source: FrameSource,
                  tracker, state, **extra: Any) -> dict[str, Any]:
    """A file's run summary (frames that could not be decoded, memory kept, and `extra`), written."""
    summary = _summary(args, outputs, files, seconds, complete, getattr(source, "bad", []), tracker)
    errors = getattr(source, "errors", {})
    summary["bad_frames"] = [{"frame": i, "error": errors[i]} for i in sorted(errors)]
    summary.update(extra)
    summary["memory"] = {"stored_frames": state.stored_frames(), "bytes": state.memory_bytes()}
    _write_summary(args.out, summary)
    return summary


def _write_summary(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=1, default=str).encode())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.max_frames is not None and args.max_frames < 0:
        raise ConfigError("--max-frames must be 0 or more")
    config = args.config or DEFAULT_CONFIG
    if args.config is None and not config.is_file():
        raise ConfigError(f"no --config given and {DEFAULT_CONFIG} does not exist here")
    from engine.config import load_config

    cfg = load_config(config)
    detector = detector_settings(args, cfg)
    prompts = collect_prompts(args, optional=detector is not None)
    if not is_stream_url(args.video):
        open_video(args.video).close()  # a bad video fails before the models load
    from engine.tracker import Tracker

    tracker = Tracker.from_config(cfg, model=args.model, verify_checksums=True)
    interrupted = False
    try:
        if is_stream_url(args.video):
            summary = track_live(args, tracker, prompts, detector)
        elif detector is not None:
            summary = track_detected(args, tracker, prompts, detector)
        else:
            summary = track_offline(args, tracker, prompts)
    except KeyboardInterrupt:
        interrupted = True
        summary = json.loads((args.out / "summary.json").read_text()) if (args.out / "summary.json").is_file() else {}
    state = "interrupted: outputs marked incomplete" if interrupted else (
        "complete" if summary.get("complete") else "incomplete")
    print(f"{summary.get('frames', 0)} frames in {summary.get('seconds', 0)} s "
          f"({summary.get('fps') or 0:.2f} fps), {state}")
    for obj_id, info in summary.get("objects", {}).items():
        how = "found by the detector" if info.get("origin") == "detector" else "prompted"
        label = f" ({info['label']}, {how})" if info.get("label") else ""
        print(f"  object {obj_id}{label}: present on {info['frames_present']} frames")
    if summary.get("detector"):
        d = summary["detector"]
        print(f"  detector {d['kind']}: {d['runs']} runs, {d['detections']} detections, {d['admitted']} objects "
              f"admitted, {d['over_cap']} refused over the cap; events {d['events'] or 'none'}")
    if summary.get("ids_not_in_png_masks"):
        print(f"  ids above 255 are not in the PNG masks (masks.json has them): {summary['ids_not_in_png_masks']}")
    if summary.get("bad_frames_replaced"):
        print(f"  frames that could not be decoded (replaced by the previous one): {summary['bad_frames_replaced']}")
    print(f"  outputs: {', '.join(summary.get('outputs', []))}, {args.out / 'summary.json'}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
