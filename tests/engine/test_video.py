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
    frames = [src.get(i) for i in range(10)]
    assert len(src._cache) <= src.cache_size
    again = src.get(3)  # a backward seek decodes the same frame
    assert np.abs(again.astype(int) - frames[3].astype(int)).mean() < 2
    src.close()


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
    with pytest.raises(InputError, match="no longer available"):
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
