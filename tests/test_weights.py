"""Backbone weights through open_clip's download and cache, against a real hub server on 127.0.0.1.

The server speaks the hub's file-resolve protocol (HEAD/GET /{repo}/resolve/{revision}/{file}
with ETag, X-Repo-Commit and Content-Length, as huggingface_hub's file_download checks them).
huggingface_hub reads HF_ENDPOINT at import, so downloads run `fif` in a subprocess; offline
checks run in this process (fif.models.weights reads HF_HUB_OFFLINE when it is called).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from fif.cli.main import main
from fif.errors import FifError
from fif.models.backbone import build_backbone

TINY_REPO = "test/tiny"
TINY = f"hf-hub:{TINY_REPO}"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY_CONFIG = {
    "model_cfg": {"embed_dim": 32,
                  "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
                  "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}},
    "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}


class Hub:
    """A hub on 127.0.0.1: repositories of files, and every request it was asked."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos, self.requests = repos, []
        self.damaged: set[str] = set()  # files sent with one bit flipped (headers describe the true file)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                hub.serve(self, body=False)

            def do_GET(self) -> None:
                hub.serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def serve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append(f"{handler.command} {handler.path}")
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", urlparse(handler.path).path)
        files = self.repos.get(match.group(1)) if match else None
        if files is None or match.group(3) not in files:
            handler.send_response(404)
            handler.send_header("X-Error-Code", "RepoNotFound" if files is None else "EntryNotFound")
            handler.send_header("X-Repo-Commit", COMMIT)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = files[match.group(3)]
        # The hub's ETag: the SHA-256 for LFS files (weights), the git blob SHA-1 for small ones.
        lfs = match.group(3).endswith((".safetensors", ".bin"))
        etag = hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        start = int(re.fullmatch(r"bytes=(\d+)-", handler.headers.get("Range", "bytes=0-")).group(1))
        handler.send_response(206 if start else 200)
        handler.send_header("ETag", f'"{etag}"')
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("Content-Length", str(len(data) - start))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.end_headers()
        if body:
            payload = bytearray(data[start:])
            if match.group(3) in self.damaged:
                payload[-1] ^= 0x01
            handler.wfile.write(bytes(payload))


def tiny_repo() -> tuple[dict[str, bytes], dict[str, torch.Tensor]]:
    """An open_clip repository of a tiny CLIP: config + safetensors weights (and the weights it holds)."""
    import open_clip
    from safetensors.torch import save

    torch.manual_seed(7)
    state = open_clip.CLIP(**TINY_CONFIG["model_cfg"]).state_dict()
    return ({"open_clip_config.json": json.dumps(TINY_CONFIG).encode(), "open_clip_model.safetensors": save(state)},
            state)


@pytest.fixture()
def hub():
    files, state = tiny_repo()
    server = Hub({TINY_REPO: files})
    server.state = state
    yield server
    server.close()


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """One `fif weights fetch` (a subprocess: HF_ENDPOINT) into a cache that tests copy: the run and its hub."""
    files, state = tiny_repo()
    server = Hub({TINY_REPO: files})
    server.state = state
    cache = tmp_path_factory.mktemp("fetched") / "cache"
    result = fif(server, "weights", "fetch", TINY, "--cache-dir", str(cache))
    server.close()
    return result, cache, server


@pytest.fixture()
def cache(fetched, tmp_path) -> Path:
    """A copy of the fetched cache (links kept, as `cp -a` copies it to another machine)."""
    copy = tmp_path / "cache"
    shutil.copytree(fetched[1], copy, symlinks=True)
    return copy


def hub_env(hub: Hub) -> dict[str, str]:
    """This environment, online, with huggingface_hub pointed at the loopback hub."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    return env


def fif(hub: Hub, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fif.cli", *args], capture_output=True, text=True, env=hub_env(hub),
                          timeout=300)


def python(hub: Hub, code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=hub_env(hub),
                          timeout=300)


def manifest(cache: Path) -> dict:
    return json.loads((cache / "fif_weights.json").read_text())["weights"]


def assert_weights_equal(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[key], state[key]) for key in state)


def test_fetch_records_checksum_and_offline_build_loads_from_cache(fetched, cache, monkeypatch):
    result, _, server = fetched
    assert result.returncode == 0, result.stderr
    weights = server.repos[TINY_REPO]["open_clip_model.safetensors"]
    digest = hashlib.sha256(weights).hexdigest()
    assert f"sha256 {digest}" in result.stdout
    entry = manifest(cache)[TINY]
    assert (entry["name"], entry["arch"], entry["tag"], entry["repo"]) == (TINY, TINY, None, TINY_REPO)
    assert (entry["sha256"], entry["bytes"]) == (digest, len(weights))
    assert (cache / entry["file"]).resolve().read_bytes() == weights
    assert [f["file"].rsplit("/", 1)[1] for f in entry["files"]] == ["open_clip_config.json",
                                                                     "open_clip_model.safetensors"]
    assert sorted(r.split()[0] for r in server.requests if "/resolve/" in r).count("GET") == 2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server is gone: the copied cache alone
    backbone = build_backbone(TINY, cache_dir=str(cache))
    assert_weights_equal(backbone.model, server.state)
    assert backbone.tokenizer(["a photo"]).shape == (1, 16)
    assert list(backbone.eval_transform.transforms[-1].mean) == [0.5, 0.5, 0.5]  # the repository's preprocess_cfg


def test_cached_weights_are_used_without_asking_the_hub(hub, cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert_weights_equal(build_backbone(TINY, cache_dir=str(cache)).model, hub.state)
    assert hub.requests == []


def test_build_downloads_missing_weights_and_records_them(hub, tmp_path):
    code = ("import sys; from fif.models.backbone import build_backbone\n"
            "print(float(build_backbone(sys.argv[2], cache_dir=sys.argv[1]).model.logit_scale))")
    result = python(hub, code, str(tmp_path), TINY)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == pytest.approx(float(hub.state["logit_scale"]))
    weights = hub.repos[TINY_REPO]["open_clip_model.safetensors"]
    assert manifest(tmp_path)[TINY]["sha256"] == hashlib.sha256(weights).hexdigest()


@pytest.mark.parametrize("name, named", [(TINY, TINY_REPO), ("openclip_vit_b32", "ViT-B-32 / laion2b_s34b_b79k")])
def test_offline_with_empty_cache_is_one_line_naming_the_weights_and_the_fix(tmp_path, monkeypatch, name, named):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FifError) as error:
        build_backbone(name, cache_dir=str(tmp_path / "empty"))
    message = str(error.value)
    assert "\n" not in message and named in message and "HF_HUB_OFFLINE=1" in message
    assert f"fif weights fetch {name} --cache-dir D" in message
    assert "experiment.backbone.cache_dir=D" in message and "experiment.backbone.checkpoint=FILE" in message


def test_offline_fetch_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["weights", "fetch", TINY, "--cache-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: fif weights fetch {TINY} needs the network, but HF_HUB_OFFLINE=1 is set"]


def test_tampered_cache_is_refused_and_fetch_replaces_it(hub, cache, monkeypatch):
    blob = (cache / manifest(cache)[TINY]["file"]).resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    blob.write_bytes(bytes(data))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FifError, match=r"does not match the SHA-256 recorded in .*fif_weights\.json") as error:
        build_backbone(TINY, cache_dir=str(cache))
    assert "\n" not in str(error.value) and f"fif weights fetch {TINY}" in str(error.value)

    result = fif(hub, "weights", "fetch", TINY, "--cache-dir", str(cache))
    assert result.returncode == 0, result.stderr
    assert "replaced a cached copy" in result.stdout
    assert_weights_equal(build_backbone(TINY, cache_dir=str(cache)).model, hub.state)


def test_weights_list_shows_named_backbones_and_what_is_cached(cache, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["weights", "list", "--cache-dir", str(cache)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "ViT-B-32 / laion2b_s34b_b79k" in lines["openclip_vit_b32"]
    assert lines["openclip_vit_b32"].endswith("not cached")
    assert "cached" in lines[TINY] and "sha256 recorded" in lines[TINY]


def test_failed_downloads_are_one_line(hub, tmp_path):
    """A transfer whose bytes differ from the hub's SHA-256 ETag, and a repository the hub does not have."""
    hub.damaged.add("open_clip_model.safetensors")
    code = ("import sys; from fif.cli.main import main\n"
            "for name in sys.argv[2:]:\n"
            "    print('rc', main(['weights', 'fetch', name, '--cache-dir', sys.argv[1]]), file=sys.stderr)")
    result = python(hub, code, str(tmp_path), TINY, "hf-hub:test/absent")
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error", "rc"))]
    assert len(lines) == 4 and lines[1] == lines[3] == "rc 2", result.stderr
    assert "does not match the SHA-256 the hub gave for it" in lines[0]
    assert "hf-hub:test/absent" in lines[2] and "could not be downloaded (" in lines[2]
    assert TINY not in (manifest(tmp_path) if (tmp_path / "fif_weights.json").exists() else {})


def test_final_model_of_a_run_loads_back_bit_for_bit(tmp_path, small):
    from fif.config import compose
    from fif.train.run import run_experiment

    overrides = ["experiment.task.num=1", "experiment.task.n_samples=128", "log.progress=false",
                 f"log.folder={tmp_path}", "log.name=saved", "log.checkpoint=true", *small]
    output = run_experiment(compose(overrides), echo=lambda *_: None)
    path = output.run_dir / "final_model.pt"
    saved = torch.load(path, weights_only=True)["model"]
    bb = compose([*overrides, f"experiment.backbone.checkpoint={path}"]).experiment.backbone
    loaded = build_backbone(bb.name, bb.checkpoint, bb.cache_dir, bool(bb.pretrained)).model
    assert_weights_equal(loaded, saved)
    shipped = build_backbone("mini_clip").model.state_dict()
    assert any(not torch.equal(shipped[k], saved[k]) for k in saved)  # the run trained: not the shipped weights
    with pytest.raises(FifError, match=r"holds a mini_clip model, but experiment\.backbone\.name=openclip_vit_b32"):
        build_backbone("openclip_vit_b32", str(path))


@pytest.mark.slow
def test_named_backbone_downloads_through_open_clips_pretrained_tag(tmp_path):
    """ViT-B-32 / laion2b_s34b_b79k served as its hub repository (random weights, fp16: 300 MB)."""
    import open_clip
    from safetensors.torch import save

    torch.manual_seed(0)
    state = {k: v.half() for k, v in open_clip.create_model("ViT-B-32").state_dict().items()}
    server = Hub({"laion/CLIP-ViT-B-32-laion2B-s34B-b79K": {"open_clip_model.safetensors": save(state)}})
    try:
        result = fif(server, "weights", "fetch", "openclip_vit_b32", "--cache-dir", str(tmp_path))
        assert result.returncode == 0, result.stderr
    finally:
        server.close()
    model = build_backbone("openclip_vit_b32", cache_dir=str(tmp_path)).model  # no server: from the cache
    assert torch.equal(model.visual.conv1.weight, state["visual.conv1.weight"].float())
    assert manifest(tmp_path)["openclip_vit_b32"]["tag"] == "laion2b_s34b_b79k"
