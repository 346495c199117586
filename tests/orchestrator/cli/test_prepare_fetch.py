"""`orchestrator prepare --fetch`: datasets fetched through the project's loaders, models with huggingface_hub.

No network here or in CI: the dataset is Tiny-ImageNet's real zip layout, written by the test and
served over HTTP on the loopback interface (a mirror named by CROPD_TINYIMAGENET_URL, fetched by
torchvision's own download code), and the model fetch runs with huggingface_hub in offline mode,
where it must fail in one line. Every command runs as a user runs it, in a fresh process.
"""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from trainables.data import TINYIMAGENET_URL_ENV, load_dataset

REPO = Path(__file__).resolve().parents[3]
WNIDS = ("n01443537", "n01629819")


def jpeg(value: int) -> bytes:
    out = BytesIO()
    Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(out, "JPEG")
    return out.getvalue()


def tinyimagenet_zip(path: Path) -> Path:
    """cs231n's layout: train/<wnid>/images/*.JPEG, val/images/*.JPEG with val/val_annotations.txt."""
    with zipfile.ZipFile(path, "w") as archive:
        for k, wnid in enumerate(WNIDS):
            archive.writestr(f"tiny-imagenet-200/train/{wnid}/images/{wnid}_0.JPEG", jpeg(40 + k))
            archive.writestr(f"tiny-imagenet-200/train/{wnid}/{wnid}_boxes.txt", f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
        # val_0 is the second class, val_1 the first: the sorting must follow the annotations.
        archive.writestr("tiny-imagenet-200/val/images/val_0.JPEG", jpeg(200))
        archive.writestr("tiny-imagenet-200/val/images/val_1.JPEG", jpeg(100))
        archive.writestr(
            "tiny-imagenet-200/val/val_annotations.txt",
            f"val_0.JPEG\t{WNIDS[1]}\t0\t0\t63\t63\nval_1.JPEG\t{WNIDS[0]}\t0\t0\t63\t63\n",
        )
        archive.writestr("tiny-imagenet-200/wnids.txt", "\n".join(WNIDS) + "\n")
    return path


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on 127.0.0.1 serving the folder `mirror/`; yields (folder, base URL)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


def prepare(tmp_path: Path, spec: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    hf = tmp_path / "hf"
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "prepare", str(spec), *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PYTHONPATH": str(REPO),
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "HF_HOME": str(hf),
            "HF_HUB_CACHE": str(hf / "hub"),
            "HF_HUB_OFFLINE": "1",
            "CROPD_DATA_ROOT": str(tmp_path / "data"),
            **env,
        },
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    return result


def write_spec(path: Path, trial: dict) -> Path:
    path.write_text(yaml.safe_dump({"name": path.stem, "trial": trial}))
    return path


@pytest.fixture
def tiny_spec(tmp_path):
    return write_spec(tmp_path / "tiny.yaml", {"data": {"dataset": "tinyimagenet"}, "foundation": {"name": "embedded"}})


def test_fetch_puts_tinyimagenet_in_place_with_val_sorted_and_the_check_passes(tmp_path, tiny_spec, mirror):
    folder, base = mirror
    url = f"{base}/{tinyimagenet_zip(folder / 'tiny.zip').name}"
    before = prepare(tmp_path, tiny_spec, env={TINYIMAGENET_URL_ENV: url})
    assert before.returncode == 1 and before.stdout.startswith("MISSING")

    result = prepare(tmp_path, tiny_spec, "--fetch", env={TINYIMAGENET_URL_ENV: url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("present") and "0 missing" in result.stdout
    data = tmp_path / "data"
    # Only the dataset is left in the root: no staging folder, no zip.
    assert sorted(p.name for p in data.iterdir()) == ["tiny-imagenet-200"]
    val = data / "tiny-imagenet-200" / "val"
    assert not (val / "images").exists()
    assert (val / WNIDS[1] / "val_0.JPEG").is_file() and (val / WNIDS[0] / "val_1.JPEG").is_file()
    test = load_dataset("tinyimagenet", "test", root=data)
    assert test.classes == list(WNIDS)
    # Each image went to its annotated class: val_1 (grey 100) is class 0, val_0 (grey 200) class 1.
    means = {int(label): float(image.float().mean()) for image, label in zip(test.images, test.labels)}
    assert abs(means[0] - 100) < 3 and abs(means[1] - 200) < 3
    assert len(load_dataset("tinyimagenet", "train", root=data)) == 2


def test_a_failed_fetch_is_one_line_exit_1_and_leaves_the_data_root_as_it_was(tmp_path, tiny_spec, mirror):
    gone = f"{mirror[1]}/no-such-file.zip"  # the server answers 404
    result = prepare(tmp_path, tiny_spec, "--fetch", "--format", "json", env={TINYIMAGENET_URL_ENV: gone})
    assert result.returncode == 1
    (failure,) = [line for line in result.stderr.splitlines() if line.startswith("orchestrator:")]
    assert failure.startswith("orchestrator: could not fetch dataset tinyimagenet: ")
    document = json.loads(result.stdout)
    assert [f["name"] for f in document["fetch_failures"]] == ["tinyimagenet"]
    assert document["summary"]["MISSING"] == 1
    assert list((tmp_path / "data").iterdir()) == []  # the staging folder went with the failure


def test_a_partial_copy_in_the_root_is_never_overwritten(tmp_path, tiny_spec, mirror):
    folder, base = mirror
    url = f"{base}/{tinyimagenet_zip(folder / 'tiny.zip').name}"
    partial = tmp_path / "data" / "tiny-imagenet-200" / "train"
    partial.mkdir(parents=True)
    (partial / "mine.txt").write_text("a user's file")
    result = prepare(tmp_path, tiny_spec, "--fetch", env={TINYIMAGENET_URL_ENV: url})
    assert result.returncode == 1
    assert "already held an incomplete copy, left as it is (missing tiny-imagenet-200/val)" in result.stderr
    assert (partial / "mine.txt").read_text() == "a user's file"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["tiny-imagenet-200"]


def test_fetching_a_hub_model_without_network_is_one_line_and_exit_1(tmp_path):
    spec = write_spec(
        tmp_path / "hub.yaml", {"data": {"dataset": "digits"}, "foundation": {"name": "cropd-tests/no-such-model"}}
    )
    result = prepare(tmp_path, spec, "--fetch", env={})
    assert result.returncode == 1
    (failure,) = [line for line in result.stderr.splitlines() if line.startswith("orchestrator:")]
    assert failure.startswith("orchestrator: could not fetch foundation cropd-tests/no-such-model: ")
    foundation = [line for line in result.stdout.splitlines() if " foundation " in line]
    assert foundation[0].startswith("MISSING") and "hf download cropd-tests/no-such-model" in foundation[0]
    hub = tmp_path / "hf" / "hub"
    assert not hub.exists() or not any(hub.glob("models--cropd-tests--no-such-model/snapshots/*"))
