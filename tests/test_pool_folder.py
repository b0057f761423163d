"""`fif data pool`: adopt and verify webdataset shard folders, and build one with img2dataset.

The build test serves generated JPEGs from a real HTTP server on 127.0.0.1 and runs the real
img2dataset (the optional ``pool`` extra); without it installed that test is skipped and the
one-line install hint is checked instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fif.config.blocks import check_run_options
from fif.cli.main import main
from fif.data.samples.pool import PoolStream, find_shards

HAS_IMG2DATASET = importlib.util.find_spec("img2dataset") is not None


def jpeg(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_shard(path: Path, samples: list[dict]) -> Path:
    import webdataset as wds

    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)
    return path


def clean_samples(shard: int, count: int = 6) -> list[dict]:
    return [{"__key__": f"s{shard}_{i:03d}", "jpg": jpeg(shard * 100 + i), "txt": f"photo {shard}-{i}"}
            for i in range(count)]


def pool(*args: str) -> int:
    return main(["data", "pool", *map(str, args), "--no-progress", "--workers", "1"])


def manifest(folder: Path) -> dict:
    return json.loads((folder / "pool.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mini_pool_is_adopted_verified_and_read_by_the_run(mini_root, tmp_path, capsys):
    out = tmp_path / "pool"
    assert main(["data", "pool", str(out), "--adopt", str(mini_root / "pool"), "--sample", "10", "--no-progress"]) == 0
    assert "4 shards, 20000 samples, 40 images decoded" in capsys.readouterr().out
    record = manifest(out)
    assert (record["num_shards"], record["num_samples"], record["sample_per_shard"]) == (4, 20000, 10)
    assert record["source"] == {"kind": "adopted", "from": str(mini_root / "pool")}
    for shard in record["shards"]:
        original = mini_root / "pool" / shard["name"]
        assert (shard["samples"], shard["images_checked"]) == (5000, 10)
        assert (shard["sha256"], shard["bytes"]) == (sha256(original), original.stat().st_size)
        assert (out / shard["name"]).resolve() == original.resolve()  # linked, not copied

    from fif.config import compose
    from fif.data.roots import pool_shards

    cfg = compose([f"experiment.dataset.pretraining_pool={out}", "experiment.dataset.pool_shards=null"])
    shards = pool_shards(check_run_options(cfg).experiment.dataset, None, mini_root)
    assert shards == find_shards(out) == [out / s["name"] for s in record["shards"]]
    image, caption = PoolStream(find_shards(out), seed=0, shuffle_buffer=10).next().decode()
    assert image.size == (32, 32) and caption


def test_problems_name_shard_and_sample_key(tmp_path, capsys):
    write_shard(tmp_path / "shard-0.tar", clean_samples(0))
    broken = [*clean_samples(1, 2),
              {"__key__": "bad_jpeg", "jpg": jpeg(7)[:200], "txt": "a cut-off photo"},
              {"__key__": "no_caption", "jpg": jpeg(8)},
              {"__key__": "empty_caption", "jpg": jpeg(9), "txt": "  "},
              {"__key__": "no_image", "txt": "a caption alone"}]
    write_shard(tmp_path / "shard-1.tar", broken)
    assert pool(tmp_path) == 1
    out = capsys.readouterr().out
    problems = sorted(line for line in out.splitlines() if line.startswith("problem: "))
    assert problems[0].startswith("problem: image shard-1.tar:bad_jpeg.jpg is corrupt or unreadable")
    assert problems[1:] == ["problem: shard-1.tar:empty_caption: no caption (expected a non-empty "
                            ".txt/.caption/.json member)",
                            "problem: shard-1.tar:no_caption: no caption (expected a non-empty "
                            ".txt/.caption/.json member)",
                            "problem: shard-1.tar:no_image: no image (expected a .png/.jpg/.jpeg/.webp member)"]
    assert "12 samples" in out and not (tmp_path / "pool.json").exists()
    assert len((tmp_path / "pool_problems.txt").read_text().splitlines()) == 4

    assert pool(tmp_path, "--sample", "1") == 1  # a sample decodes one image; members are still all checked
    problems = [line for line in capsys.readouterr().out.splitlines() if line.startswith("problem: ")]
    assert {p.split(":")[2] for p in problems[:3]} == {"no_caption", "empty_caption", "no_image"}


@pytest.mark.parametrize("keep", [0.5, 0.25, "last member"])
def test_a_cut_off_shard_is_named(tmp_path, capsys, keep):
    shard = write_shard(tmp_path / "shard-0.tar", clean_samples(0, 20))
    with tarfile.open(shard) as archive:  # "last member": cut right after it, before the end-of-archive marker
        last = archive.getmembers()[-1]
    size = last.offset_data + -(-last.size // 512) * 512 if keep == "last member" else int(shard.stat().st_size * keep)
    shard.write_bytes(shard.read_bytes()[:size])
    assert pool(tmp_path) == 1
    problem = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("problem: "))
    assert problem.startswith(("problem: shard-0.tar: unreadable tar after ", "problem: shard-0.tar: cut off after "))


def _blank_member(shard: Path, member_name: str) -> None:
    """Zero one member's bytes in place: the tar stays readable, that image no longer decodes."""
    with tarfile.open(shard) as archive:
        member = archive.getmember(member_name)
    with open(shard, "r+b") as handle:
        handle.seek(member.offset_data)
        handle.write(bytes(member.size))


def test_recheck_hashes_unchanged_shards_and_decodes_the_rest(tmp_path, capsys):
    shards = [write_shard(tmp_path / f"shard-{i}.tar", clean_samples(i)) for i in range(3)]
    assert pool(tmp_path, "--sample", "2") == 0
    assert manifest(tmp_path)["images_checked"] == 6
    capsys.readouterr()

    assert pool(tmp_path, "--sample", "2") == 0  # nothing changed: hashed only
    assert "3 shards, 18 samples, 6 images decoded (3 shards unchanged" in capsys.readouterr().out
    assert pool(tmp_path) == 0  # every image asked for now: decoded, since only 2 per shard were before
    assert "18 images decoded" in capsys.readouterr().out and manifest(tmp_path)["images_checked"] == 18

    _blank_member(shards[1], "s1_004.jpg")  # same size, other bytes
    shards[2].unlink()
    assert pool(tmp_path) == 1
    out = capsys.readouterr().out
    assert "(1 shards unchanged since pool.json" in out
    assert "problem: shard-2.tar: recorded in" in out and "but missing from the folder" in out
    assert "problem: image shard-1.tar:s1_004.jpg is corrupt" in out
    assert [s["sha256"] for s in manifest(tmp_path)["shards"]][0] == sha256(shards[0])  # unchanged manifest


def test_bad_folders_and_adoption_conflicts_are_one_line(tmp_path, capsys):
    assert pool(tmp_path / "absent") == 2
    assert "absent does not exist: give --urls FILE" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert pool(tmp_path / "empty") == 2
    assert "has no .tar shards" in capsys.readouterr().err
    write_shard(tmp_path / "src" / "shard-0.tar", clean_samples(0))
    (tmp_path / "src" / "pool.json").write_text('{"shards": [{"name": "shard-0.tar"}]}')
    assert pool(tmp_path / "src") == 2
    assert "pool.json is not a pool manifest (KeyError: 'bytes'); delete it" in capsys.readouterr().err
    (tmp_path / "src" / "pool.json").unlink()
    write_shard(tmp_path / "out" / "shard-0.tar", clean_samples(1))
    assert pool(tmp_path / "out", "--adopt", tmp_path / "src") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "already exists and is not a link" in err and "\n" not in err


@pytest.mark.skipif(HAS_IMG2DATASET, reason="img2dataset is installed: the build test runs instead")
def test_without_img2dataset_the_build_says_how_to_install_it(tmp_path, capsys):
    urls = tmp_path / "urls.csv"
    urls.write_text("url,text\nhttp://127.0.0.1:9/a.jpg,a photo\n")
    assert pool(tmp_path / "out", "--urls", urls) == 2
    assert capsys.readouterr().err.strip() == ("error: fif data pool --urls needs img2dataset, an optional "
                                               "dependency: pip install 'fomo-in-flux[pool]'")


class ImageServer:
    """Generated JPEGs over HTTP on 127.0.0.1 (/img/N.jpg), counting requests."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                data = images.get(self.path)
                self.send_response(200 if data else 404)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.mark.skipif(not HAS_IMG2DATASET, reason="img2dataset is not installed (pip install 'fomo-in-flux[pool]')")
def test_img2dataset_builds_shards_that_the_run_reads(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = {f"/img/{i}.jpg": jpeg(i, (48 + 8 * i, 40)) for i in range(10) if i != 6}  # /img/6.jpg: 404
    server = ImageServer(images)
    captions = {f"{server.url}/img/{i}.jpg": f"generated photo number {i}" for i in range(10)}
    pq.write_table(pa.table({"url": list(captions), "caption": list(captions.values())}), tmp_path / "urls.parquet")
    out = tmp_path / "pool"
    command = [sys.executable, "-m", "fif.cli", "data", "pool", str(out), "--urls", str(tmp_path / "urls.parquet"),
               "--caption-col", "caption", "--processes", "1", "--threads", "4", "--samples-per-shard", "4",
               "--resize-mode", "center_crop", "--image-size", "32", "--no-progress", "--workers", "1"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    try:
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert first.returncode == 0, first.stdout + first.stderr
        asked = len(server.requests)
        again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)  # resumes: done
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(server.requests) == asked == 10
    finally:
        server.close()
    assert "img2dataset: 9 of 10 URLs downloaded (1 failed to download" in first.stdout
    assert "(3 shards unchanged since pool.json" in again.stdout
    record = manifest(out)
    assert (record["num_shards"], record["num_samples"], record["images_checked"]) == (3, 9, 9)
    assert record["source"]["kind"] == "img2dataset" and record["source"]["downloaded"] == 9
    stream = PoolStream(find_shards(out), seed=0, shuffle_buffer=4)
    decoded = [record.decode() for record in stream.take(9)]
    assert sorted(caption for _, caption in decoded) == sorted(c for u, c in captions.items() if "/6.jpg" not in u)
    assert {image.size for image, _ in decoded} == {(32, 32)}


@pytest.mark.skipif(not HAS_IMG2DATASET, reason="img2dataset is not installed (pip install 'fomo-in-flux[pool]')")
def test_url_list_without_the_caption_column_is_one_line(tmp_path, capsys):
    urls = tmp_path / "urls.csv"
    urls.write_text("url,caption\nhttp://127.0.0.1:9/a.jpg,a photo\n")
    assert pool(tmp_path / "out", "--urls", urls) == 2
    assert capsys.readouterr().err.strip() == (f"error: {urls} has no column 'text' (--caption-col); its columns: "
                                               f"url, caption")
