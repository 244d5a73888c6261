"""Live sources: capture threads that keep the newest frame, and promptable sessions on `Tracker.stream()`.

    from engine.live import Capture, LiveSession

    capture = Capture("rtsp://camera/stream").start()      # or camera:0, an MJPEG URL, a file, a folder
    session = LiveSession(tracker, name="door")
    for frame in capture.frames():                           # always the newest frame: no backlog
        result = session.track(frame)                        # result.frame_id, .captured_at, .objects
        ...
    session.prompt(frame_id, obj_id=1, points=[[420, 250]], labels=[1])   # on a frame a result named
"""

from engine.live.capture import POLICIES, STATES, Backoff, Capture, CapturedFrame
from engine.live.session import FrameNotHeldError, LiveResult, LiveSession, ObjectLimitError, ObjectResult

__all__ = ["POLICIES", "STATES", "Backoff", "Capture", "CapturedFrame", "FrameNotHeldError", "LiveResult",
           "LiveSession", "ObjectLimitError", "ObjectResult"]
