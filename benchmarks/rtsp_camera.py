"""A real RTSP camera for the live benchmarks: gst-rtsp-server (Debian: gir1.2-gst-rtsp-server-1.0,
python3-gi, gstreamer1.0-plugins-{base,good,ugly}) serving a clip's own H.264 at its own rate, with no
re-encoding, so the camera costs the box about nothing. Run by the system Python, which has `gi`:

    /usr/bin/python3 benchmarks/rtsp_camera.py PORT CLIP.mp4 [LOOPS]

The clip is first concatenated LOOPS times (default 40: bedroom.mp4 becomes 4 minutes 27 s) into
CLIP.loopN.mp4 beside /tmp, since a file source ends. Prints "ready URL" once it listens; runs until killed.
"""

import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, clip = sys.argv[1], Path(sys.argv[2])
loops = int(sys.argv[3]) if len(sys.argv) > 3 else 40
long_clip = Path("/tmp") / f"{clip.stem}.loop{loops}.mp4"
if not long_clip.is_file():
    part = long_clip.with_suffix(".part.mp4")
    p = Gst.parse_launch(f"concat name=c ! h264parse ! mp4mux ! filesink location={part} " + " ".join(
        f"filesrc location={clip} ! qtdemux ! h264parse ! c." for _ in range(loops)))
    p.set_state(Gst.State.PLAYING)
    msg = p.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    p.set_state(Gst.State.NULL)
    if msg.type == Gst.MessageType.ERROR:
        sys.exit(f"cannot concatenate {clip}: {msg.parse_error()}")
    part.rename(long_clip)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f"( filesrc location={long_clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print(f"ready rtsp://127.0.0.1:{port}/cam", flush=True)
GLib.MainLoop().run()
