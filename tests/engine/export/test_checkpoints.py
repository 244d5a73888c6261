"""Official checkpoints by name, served by a local HTTP server standing in for the publisher: a full
download, an interrupted one resumed, a truncated transfer refused, the offline error, and a file that is
not the variant's checkpoint refused by the exporter and not left in the cache."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from engine.errors import ExportError
from engine.export.checkpoints import BASE_ENV, CACHE_ENV, fetch_official, official_url
from engine.modelset import file_sha256
from tests.conftest import TEST_SIZE


class Publisher:
    """Serves files from a folder with HTTP Range support. `cut_after` makes the next response stop after
    that many bytes (a dropped connection); `lie_length` announces more bytes than it sends."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cut_after: int | None = None
        self.ranges: list[str | None] = []
        publisher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = publisher.folder / self.path.rsplit("/", 1)[1]
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                rng = self.headers.get("Range")
                publisher.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(data) - start))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                body = data[start:]
                if publisher.cut_after is not None:
                    body, publisher.cut_after = body[:publisher.cut_after], None
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/checkpoints"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def publisher(tmp_path, monkeypatch):
    files = tmp_path / "published"
    files.mkdir()
    pub = Publisher(files)
    monkeypatch.setenv(BASE_ENV, pub.base)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    yield pub
    pub.close()


def test_the_publishers_urls(monkeypatch):
    monkeypatch.delenv(BASE_ENV, raising=False)
    assert official_url("sam2.1_hiera_large") == \
        "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt"
    assert official_url("sam2_hiera_tiny") == "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_tiny.pt"
    assert official_url("edgetam") == "https://github.com/facebookresearch/EdgeTAM/raw/main/checkpoints/edgetam.pt"
    monkeypatch.setenv(BASE_ENV, "http://mirror.local/ckpt/")
    assert official_url("edgetam") == "http://mirror.local/ckpt/edgetam.pt"


def test_a_full_download_then_the_cache(publisher, tmp_path, report):
    payload = os.urandom(6 << 20)
    (publisher.folder / "sam2.1_hiera_tiny.pt").write_bytes(payload)
    t0 = time.perf_counter()
    got = fetch_official("sam2.1_hiera_tiny", progress=False)
    took = time.perf_counter() - t0
    assert got.path == tmp_path / "cache" / "sam2.1_hiera_tiny.pt" and got.path.read_bytes() == payload
    assert got.sha256 == file_sha256(got.path) and got.bytes == len(payload) and not got.cached
    assert got.url == f"{publisher.base}/sam2.1_hiera_tiny.pt"
    again = fetch_official("sam2.1_hiera_tiny", progress=False)
    assert again.cached and again.sha256 == got.sha256 and publisher.ranges == [None]  # no second request
    report(f"checkpoint download from the local server: {len(payload) / 2**20:.0f} MB in {took:.2f} s")


def test_an_interrupted_download_resumes(publisher, tmp_path):
    payload = os.urandom(3 << 20)
    (publisher.folder / "edgetam.pt").write_bytes(payload)
    publisher.cut_after = 1 << 20  # the connection drops after 1 MiB
    with pytest.raises(ExportError, match=r"ended after 1048576 of 3145728 bytes \(Content-Length\); run the same "
                                          r"command again to resume it"):
        fetch_official("edgetam", progress=False)
    part = tmp_path / "cache" / "edgetam.pt.part"
    assert part.stat().st_size == 1 << 20 and not (tmp_path / "cache" / "edgetam.pt").exists()
    got = fetch_official("edgetam", progress=False)
    assert got.resumed_from == 1 << 20 and publisher.ranges[-1] == "bytes=1048576-"
    assert got.path.read_bytes() == payload and not part.exists()


def test_offline_names_the_url_and_where_to_put_the_file(monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    monkeypatch.setenv(BASE_ENV, f"http://127.0.0.1:{port}/ckpt")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(ExportError) as exc:
        fetch_official("sam2_hiera_small", progress=False)
    text = str(exc.value)
    assert f"cannot download http://127.0.0.1:{port}/ckpt/sam2_hiera_small.pt" in text
    assert f"put it at {tmp_path / 'cache' / 'sam2_hiera_small.pt'}" in text and "--checkpoint FILE" in text


def test_a_file_that_is_not_the_variants_checkpoint_is_refused_and_not_cached(publisher, tmp_path):
    import torch

    from engine.export.__main__ import main as export_main

    torch.save({"model": {"not.a.sam2.weight": torch.zeros(3)}}, publisher.folder / "sam2.1_hiera_tiny.pt")
    with pytest.raises(ExportError, match="does not match variant sam2.1_hiera_tiny"):
        export_main(["--variant", "sam2.1_hiera_tiny", "--image-size", str(TEST_SIZE), "--checkpoint", "official",
                     "--out", str(tmp_path / "out")])
    assert not (tmp_path / "cache" / "sam2.1_hiera_tiny.pt").exists()
    assert not (tmp_path / "cache" / "sam2.1_hiera_tiny.pt.part").exists()


def test_export_from_the_official_checkpoint_records_its_source(publisher, tmp_path, built_tiny, modelset_dir,
                                                                monkeypatch):
    """The download, the cache, the checkpoint's load and the manifest run for real. Tracing the ONNX graphs
    is the exporter's own tests' business: here each stage file is the session's export (stand-ins), and the
    checkpoint holds weights that differ from the exporter's default (seed 0) in every floating tensor: the
    constants computed from the loaded model must be the checkpoint's, not the default's, so the file was
    loaded and gave back every weight."""
    import copy

    import numpy as np
    import torch
    import yaml

    from engine.export import exporter
    from engine.export.__main__ import main as export_main
    from engine.export.exporter import compute_constants

    theirs = copy.deepcopy(built_tiny)
    with torch.no_grad():
        for t in theirs.model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.25)  # in place: the module's own parameters and buffers
    torch.save({"model": theirs.model.state_dict()}, publisher.folder / "sam2.1_hiera_tiny.pt")
    monkeypatch.setattr(exporter, "_export_onnx",
                        lambda stage, path: shutil.copyfile(modelset_dir / f"{stage.name}.onnx", path))
    out = tmp_path / "out"
    assert export_main(["--variant", "sam2.1_hiera_tiny", "--image-size", str(TEST_SIZE), "--checkpoint", "official",
                        "--out", str(out)]) == 0
    weights = yaml.safe_load((out / "modelset.yaml").read_text())["provenance"]["weights"]
    cached = tmp_path / "cache" / "sam2.1_hiera_tiny.pt"
    assert weights["source"] == "checkpoint" and weights["sha256"] == file_sha256(cached)
    assert weights["source_url"] == f"{publisher.base}/sam2.1_hiera_tiny.pt"
    want = compute_constants(theirs)
    with np.load(out / "constants.npz") as got, np.load(modelset_dir / "constants.npz") as default:
        assert sorted(got.files) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        for key in ("no_mem_embed", "no_obj_ptr", "maskmem_tpos_enc", "obj_ptr_tpos_proj_weight"):
            assert not np.array_equal(got[key], default[key]), key  # not the seed-0 default's
