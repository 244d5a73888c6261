"""A live RTSP camera for the tests: GStreamer's gst-rtsp-server (Debian: gir1.2-gst-rtsp-server-1.0,
python3-gi, the GStreamer plugins), run by the system Python, which has the `gi` bindings.

    /usr/bin/python3 tests/engine/serve/rtsp_server.py PORT

Serves rtsp://127.0.0.1:PORT/cam, a 30 fps 320 x 240 test pattern encoded live with x264 (zero latency),
and prints "ready" once it listens. Runs until killed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
width, height = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (320, 240)
factory.set_launch(f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate=30/1 "
                   "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 ! rtph264pay name=pay0 pt=96 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
