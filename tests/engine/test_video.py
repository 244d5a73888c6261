import cv2
import numpy as np
import pytest

from engine.errors import InputError
from engine.video import ArraySource, ImageFolderSource, LiveSource, VideoFileSource, open_video
from tests.conftest import require_data


def test_image_folder_is_lazy_and_natural_sorted(tmp_path):
    for i in (2, 10, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((8, 12, 3), i, np.uint8))
    src = open_video(tmp_path)
    assert isinstance(src, ImageFolderSource) and len(src) == 3 and (src.height, src.width) == (8, 12)
    assert [p.name for p in src.files] == ["f1.png", "f2.png", "f10.png"]
    assert src.get(2)[0, 0, 0] == 10


def test_video_file_reads_lazily_with_small_cache():
    data = require_data()
    src = open_video(data / "videos" / "bedroom.mp4")
    assert isinstance(src, VideoFileSource) and len(src) == 200 and (src.height, src.width) == (540, 960)
    for i in range(10):
        src.get(i)
    assert len(src._cache) <= src.cache_size and src.decoded == 10 and src.seeks == 0
    src.close()


def _forward_decode(path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def _long_gop_video(path, frames: list[np.ndarray]) -> None:
    """H.264 with a single key frame and B-frames: a seek costs a decode of everything before it."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"keyint": "1000", "min-keyint": "1000", "sc_threshold": "0", "bf": "2"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _check_reverse(path, chunk_frames: int | None = None) -> VideoFileSource:
    want = _forward_decode(path)
    src = VideoFileSource(path)
    if chunk_frames:
        src.chunk_frames = chunk_frames
    assert len(src) == len(want)
    for i in reversed(range(len(want))):
        np.testing.assert_array_equal(src.get(i), want[i], err_msg=f"frame {i} of {path}")
    return src


def test_reverse_reading_is_frame_exact_at_one_decode_per_frame():
    data = require_data()
    src = _check_reverse(data / "videos" / "bedroom.mp4")
    # the first frame is decoded once more than the rest: when the file is opened
    assert src.decoded <= len(src) + 1 and src.seeks <= -(-len(src) // src.chunk_frames), (src.decoded, src.seeks)


def test_reverse_reading_of_a_long_gop_file_in_chunks(tmp_path):
    cap = cv2.VideoCapture(str(require_data() / "videos" / "bedroom.mp4"))
    frames = [cv2.cvtColor(cv2.resize(cap.read()[1], (320, 192)), cv2.COLOR_BGR2RGB) for _ in range(90)]
    path = tmp_path / "long_gop.mp4"
    _long_gop_video(path, frames)
    src = _check_reverse(path, chunk_frames=16)  # several chunks, each from one seek into the single GOP
    n = len(src)
    assert src.decoded <= 2 * n and src.seeks <= n // 16 + 2, (src.decoded, src.seeks)


def test_truncated_jpeg_in_a_folder_is_an_error_naming_it(tmp_path):
    from engine.errors import FrameDecodeError

    frames = require_data() / "davis-car-shadow" / "frames"
    for i in range(3):
        data = (frames / f"{i:05d}.jpg").read_bytes()
        (tmp_path / f"{i:05d}.jpg").write_bytes(data[: len(data) // 2] if i == 1 else data)
    src = ImageFolderSource(tmp_path)
    src.get(0)
    with pytest.raises(FrameDecodeError, match=r"00001\.jpg \(frame 1\).*truncated"):
        src.get(1)


def test_array_source_checks_frames():
    arr = np.zeros((3, 6, 7, 3), np.uint8)
    src = open_video(arr)
    assert isinstance(src, ArraySource) and src.get(2).shape == (6, 7, 3)
    with pytest.raises(InputError, match="outside the video"):
        src.get(3)
    with pytest.raises(InputError, match="must not change size"):
        ArraySource([np.zeros((6, 7, 3), np.uint8), np.zeros((5, 7, 3), np.uint8)]).get(1)


def test_live_source_keeps_only_recent_frames():
    live = LiveSource()
    for i in range(10):
        live.push(np.full((4, 4, 3), i, np.uint8))
    assert len(live._cache) == live.cache_size and live.get(9)[0, 0, 0] == 9
    with pytest.raises(InputError, match="no longer held"):
        live.get(0)
    with pytest.raises(InputError, match="must not change size"):
        live.push(np.zeros((5, 4, 3), np.uint8))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing.mp4", "video not found"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no images"),
    (lambda p: _write(p / "x.mp4", b"not a video"), "cannot open video|cannot decode"),
    (lambda p: _write(p / "one.png", b"x"), "single image"),
])
def test_bad_videos(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        open_video(make(tmp_path))


def test_unsupported_type():
    with pytest.raises(InputError, match="cannot read frames from int"):
        open_video(5)


def test_a_video_file_by_url_reads_as_the_file():
    path = require_data() / "videos" / "bedroom.mp4"
    by_url, by_path = open_video(path.resolve().as_uri()), open_video(path)
    assert isinstance(by_url, VideoFileSource) and len(by_url) == len(by_path) == 200
    for i in (0, 1, 2, 150):
        np.testing.assert_array_equal(by_url.get(i), by_path.get(i))
    with pytest.raises(InputError, match="cannot open video"):
        open_video("file:///nowhere/none.mp4")
