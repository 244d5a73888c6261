"""Secrets never leave a source's URL: credentials and token query values are masked wherever text is shown."""

from __future__ import annotations

import pytest

from engine.live.redact import redact, redact_url


@pytest.mark.parametrize("text, want", [
    ("rtsp://admin:hunter2@10.0.0.7:554/stream1", "rtsp://***@10.0.0.7:554/stream1"),
    ("cannot open rtsp://admin:hunter2@cam/s: refused", "cannot open rtsp://***@cam/s: refused"),
    ("http://user@cam.local/video.mjpg", "http://***@cam.local/video.mjpg"),
    ("GET /sources/cam/results?token=abc123def456ghi HTTP/1.1", "GET /sources/cam/results?token=*** HTTP/1.1"),
    ("/metrics?x=1&token=s3cr3t&y=2", "/metrics?x=1&token=***&y=2"),
    ("/a?access_token=zz", "/a?access_token=***"),
    ("rtsp://10.0.0.7/stream", "rtsp://10.0.0.7/stream"),  # nothing secret: unchanged
    ("user@example.com wrote", "user@example.com wrote"),  # an address, not a URL
    ("/cam.jsonl?token=", "/cam.jsonl?token="),
])
def test_secrets_are_masked(text, want):
    assert redact(text) == want
    assert "hunter2" not in redact(text) and "s3cr3t" not in redact(text)


def test_a_url_for_display():
    assert redact_url("rtsp://a:b@h/x") == "rtsp://***@h/x"
    assert redact_url(iter([])) == "list_iterator"  # a Python source is named by its type
