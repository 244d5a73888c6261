import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.errors import InputError
from engine.preprocess import (
    check_frame,
    frame_to_input,
    prompt_mask,
    prompt_points,
    resize_antialias,
    resize_bilinear,
)
from tests.conftest import require_data


@pytest.mark.parametrize("shape,out", [((256, 256), (1024, 1024)), ((1024, 1024), (256, 256)),
                                       ((480, 854), (1024, 1024)), ((1080, 1920), (1024, 1024)),
                                       ((256, 256), (480, 854))])
def test_resizes_match_torch(shape, out):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    t = torch.from_numpy(x)[None, None]
    aa = F.interpolate(t, size=out, mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()
    np.testing.assert_allclose(resize_antialias(x, out), aa, atol=2e-5)
    plain = F.interpolate(t, size=out, mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(resize_bilinear(x, out), plain, atol=2e-5)


def test_frame_to_input_normalises():
    frame = np.full((10, 20, 3), 255, np.uint8)
    x = frame_to_input(frame, 64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225], rtol=1e-5)


def _meta_frames(folder, image_size: int) -> np.ndarray:
    """What Meta's init_state builds from a JPEG folder, by its own loader."""
    from sam2.utils.misc import load_video_frames_from_jpg_images

    images, _, _ = load_video_frames_from_jpg_images(str(folder), image_size, offload_video_to_cpu=True,
                                                     compute_device=torch.device("cpu"))
    return images.numpy()


@pytest.mark.parametrize("size", [(320, 240), (854, 480), (1280, 720), (1024, 1024), (1000, 300)])
@pytest.mark.parametrize("image_size", [512, 1024])
def test_image_folder_input_equals_metas_loader(tmp_path, size, image_size):
    """Upscaling, downscaling (Pillow's bicubic antialiases), mixed, and no resize at all."""
    from PIL import Image

    from engine.video import ImageFolderSource

    data = require_data()
    for i in range(2):
        with Image.open(data / "davis-car-shadow" / "frames" / f"{i:05d}.jpg") as im:
            im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(tmp_path / f"{i:05d}.jpg", quality=90)
    meta = _meta_frames(tmp_path, image_size)
    source = ImageFolderSource(tmp_path)
    for i in range(2):
        ours = frame_to_input(source.get(i), image_size)[0]
        assert np.max(np.abs(ours - meta[i])) <= 1e-5


def test_arrays_and_video_frames_take_the_same_resize(tmp_path):
    """A decoded frame (array, video file, live) is resized exactly as Meta resizes a lossless image of it."""
    from PIL import Image

    frame = (np.random.default_rng(3).random((300, 500, 3)) * 255).astype(np.uint8)
    Image.fromarray(frame).save(tmp_path / "00000.jpg", format="PNG")  # lossless content, the name Meta wants
    meta = _meta_frames(tmp_path, 512)[0]
    assert np.max(np.abs(frame_to_input(frame, 512)[0] - meta)) <= 1e-5


def test_box_goes_first_as_two_labelled_corners():
    coords, labels = prompt_points([[10, 20]], [1], [0, 0, 100, 50], (50, 100), 1024)
    assert labels.tolist() == [2, 3, 1]
    np.testing.assert_allclose(coords, [[0, 0], [1024, 1024], [102.4, 409.6]], rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"points": [[10, 10]], "labels": None}, "together"),
    ({"points": None, "labels": None}, "needs points"),
    ({"points": [[10, 10], [5, 5]], "labels": [1]}, "2 points but 1 labels"),
    ({"points": [[10, 10]], "labels": [2]}, "labels must be 1"),
    ({"points": [[500, 10]], "labels": [1]}, "outside the 100 x 50 frame"),
    ({"points": [[float("nan"), 1]], "labels": [1]}, "NaN"),
    ({"points": None, "labels": None, "box": [10, 10, 5, 20]}, "is empty"),
    ({"points": None, "labels": None, "box": [1, 2, 3]}, "x0, y0, x1, y1"),
    ({"points": [1, 2, 3], "labels": [1]}, "N x 2"),
])
def test_prompt_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        prompt_points(kwargs.get("points"), kwargs.get("labels"), kwargs.get("box"), (50, 100), 1024)


def test_mask_prompt_checks_size():
    with pytest.raises(InputError, match="the video is 100 x 50"):
        prompt_mask(np.ones((10, 10)), (50, 100), 64)
    m = prompt_mask(np.ones((50, 100), bool), (50, 100), 64)
    assert m.shape == (64, 64) and m.min() == 1


def test_check_frame():
    assert check_frame(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert check_frame(np.ones((4, 5, 3), np.float32)).max() == 255
    with pytest.raises(InputError, match="H x W x 3"):
        check_frame(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(InputError, match="numpy array"):
        check_frame([[1, 2]])


@pytest.mark.parametrize("size", [512, 1024])
def test_mask_prompt_thresholds_like_reference(size):
    rng = np.random.default_rng(2)
    mask = np.zeros((480, 854), bool)
    for _ in range(20):
        y, x, r = rng.integers(0, 480), rng.integers(0, 854), rng.integers(5, 60)
        yy, xx = np.ogrid[:480, :854]
        mask |= (yy - y) ** 2 + (xx - x) ** 2 < r * r
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    want = (F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True) >= 0.5)
    np.testing.assert_array_equal(prompt_mask(mask, (480, 854), size), want[0, 0].numpy().astype(np.float32))
