"""`orchestrator prepare`: what a spec needs on disk, checked against real files and a real HF cache layout.

Each command runs as a user runs it (`python -X importtime -m orchestrator prepare ...`, a fresh
process whose environment names the data root and the Hugging Face cache, which huggingface_hub
reads once, at import) and every run checks Python's import log for torch and the like. The
caches are built the documented way: models--ORG--NAME/refs/main holding a commit, and
snapshots/<commit>/config.json. No mocks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.spec.sweep_spec import load_spec
from trainables.schema import validate_trial_config
from trainables.schema.data import DATASETS, SPLITS, missing_paths, required_paths

REPO = Path(__file__).resolve().parents[3]
SPECS = sorted((REPO / "search_spaces").glob("*.yaml"))
HEAVY = ("torch", "transformers", "torchvision", "sklearn", "ray", "diffusers")
CIFAR10 = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"]
FILE_DATASETS = sorted(name for name, info in DATASETS.items() if info.required)


def offline_hub_env(hf_cache: Path, hf_home: Path) -> dict[str, str]:
    """A fresh process's environment: this repository importable, the HF cache given, no network."""
    return {
        "PYTHONPATH": str(REPO),
        "PATH": "/usr/bin:/bin",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_cache),
        "HF_HUB_OFFLINE": "1",  # it must not need the network; a slip would hang here instead of failing
    }


def run_cli(args: list[str], tmp_path: Path, *, data_root: Path, hf_cache: Path) -> subprocess.CompletedProcess:
    """`orchestrator ARGS` in a fresh process; asserts it imported nothing heavy and printed no traceback."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "orchestrator", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**offline_hub_env(hf_cache, hf_cache.parent / "hf-home"), "CROPD_DATA_ROOT": str(data_root)},
    )
    names = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    heavy = {name.split(".")[0] for name in names} & set(HEAVY)
    assert heavy == set(), sorted(heavy)
    result.stderr = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    return result


def write_spec(path: Path, trial: dict, **extra) -> Path:
    path.write_text(yaml.safe_dump({"name": path.stem, "trial": trial, **extra}))
    return path


def hub_cache(root: Path, repo_id: str, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """The HF cache layout huggingface_hub writes, for `repo_id` at `commit`: the snapshot folder."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "vit_mae"}))
    return snapshot


def lines_of(stdout: str, kind: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.split()[1:2] == [kind]]


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def places(tmp_path):
    """An empty data root, an empty HF cache, and a working folder to run in."""
    data, cache, work = tmp_path / "data", tmp_path / "hf" / "hub", tmp_path / "work"
    for folder in (data, cache, work):
        folder.mkdir(parents=True)
    return data, cache, work


# --- the shipped specs ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS, ids=[p.stem for p in SPECS])
def test_every_shipped_spec_lists_its_datasets_offline_and_writes_nothing(spec, places):
    data, cache, work = places
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode in (0, 1), result.stderr
    loaded = load_spec(spec)
    configs = [loaded.trial_config(point) for point in loaded.grid_points] or [loaded.trial_config({})]
    datasets = set()
    for config in configs:
        section = validate_trial_config(config)["data"]
        datasets |= {section["dataset"], section["preprocessor_dataset"]} - {None}
    listed = {line.split()[2] for line in lines_of(result.stdout, "dataset")}
    assert datasets <= listed, result.stdout  # and any pre-training dataset
    # Missing is exit 1 and named; everything present is exit 0.
    assert (result.returncode == 1) == ("MISSING" in result.stdout)
    assert result.stdout.strip().splitlines()[-1].startswith(f"{loaded.name}: ")
    assert tree(data) == [] and tree(cache) == [] and tree(work) == []
    assert not (cache.parent / "hf-home").exists()


def test_lambda_ablation_lists_each_input_once_with_its_trials(places):
    data, cache, work = places
    result = run_cli(
        ["prepare", str(REPO / "search_spaces" / "lambda_ablation.yaml")], work, data_root=data, hf_cache=cache
    )
    assert result.returncode == 1
    every = f"[{load_spec(REPO / 'search_spaces' / 'lambda_ablation.yaml').num_trials} trials]"
    (dataset,) = lines_of(result.stdout, "dataset")
    (foundation,) = lines_of(result.stdout, "foundation")
    (vae,) = lines_of(result.stdout, "vae")
    assert dataset.startswith("MISSING") and "cifar2" in dataset and str(data) in dataset and every in dataset
    assert "cifar-10-batches-py" in dataset and DATASETS["cifar2"].how_to_get in dataset
    assert foundation.startswith("MISSING") and "facebook/vit-mae-large" in foundation and every in foundation
    assert "hf download facebook/vit-mae-large" in foundation
    # the VAE row's clean and robust heads need the VAE; no other trial does
    assert vae.startswith("MISSING") and "stabilityai/sd-vae-ft-mse" in vae and "[2 trials]" in vae


# --- datasets: the registry is what the loaders check ---------------------------------------------


def cifar10_spec(tmp_path: Path, root: Path) -> Path:
    return write_spec(
        tmp_path / "cifar.yaml",
        {"data": {"dataset": "cifar10", "root": str(root)}, "foundation": {"name": "embedded"}},
        grid={"preprocessor.kind": ["identity", "vanilla"]},
    )


def test_cifar10_present_then_one_file_missing(places, tmp_path):
    data, cache, work = places
    root = tmp_path / "cifar-root"  # data.root wins over $CROPD_DATA_ROOT
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR10:
        (folder / name).write_bytes(b"x")  # prepare checks presence; loading is test_data.py's
    spec = cifar10_spec(tmp_path, root)
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 0, result.stdout
    (line,) = lines_of(result.stdout, "dataset")
    assert line.startswith("present") and "cifar10" in line and str(root) in line and "[2 trials]" in line
    (folder / "data_batch_3").unlink()
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 1
    (line,) = lines_of(result.stdout, "dataset")
    assert line.startswith("MISSING") and "cifar-10-batches-py/data_batch_3" in line
    assert "data_batch_2" not in line and "1 missing" in result.stdout.splitlines()[-1]


def test_cifar2_is_present_as_arrays_or_as_torchvisions_files_and_missing_names_both_ways(places, tmp_path):
    data, cache, work = places
    root = tmp_path / "cifar-root"
    spec = write_spec(
        tmp_path / "cifar2.yaml", {"data": {"dataset": "cifar2", "root": str(root)}, "foundation": {"name": "embedded"}}
    )

    def dataset_line(code: int) -> str:
        result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
        assert result.returncode == code, result.stdout
        (line,) = lines_of(result.stdout, "dataset")
        return line

    line = dataset_line(1)
    assert line.startswith("MISSING") and "cifar-10-batches-py" in line
    assert "put the arrays files cifar2/train.npz and cifar2/test.npz there" in line
    assert "torchvision's cifar-10-python files" in line and "--fetch" in line
    for split in SPLITS:  # prepare checks presence; loading them is tests/trainables/test_arrays_data.py's
        (root / "cifar2").mkdir(parents=True, exist_ok=True)
        (root / "cifar2" / f"{split}.npz").write_bytes(b"x")
    line = dataset_line(0)
    assert line.startswith("present") and f"(arrays in data root {root})" in line
    (root / "cifar2" / "train.npz").unlink()
    (root / "cifar-10-batches-py").mkdir()
    for name in CIFAR10:
        (root / "cifar-10-batches-py" / name).write_bytes(b"x")
    assert "(torchvision files and arrays in data root" in dataset_line(0)  # train from the files, test arrays
    (root / "cifar2" / "test.npz").unlink()
    assert "(torchvision files in data root" in dataset_line(0)


def test_an_arrays_dataset_is_checked_and_never_fetched(places, tmp_path):
    data, cache, work = places
    spec = write_spec(tmp_path / "toy.yaml", {"data": {"dataset": "arrays:toy"}, "foundation": {"name": "embedded"}})
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 1, result.stdout
    (line,) = lines_of(result.stdout, "dataset")
    assert line.startswith("MISSING") and "arrays:toy" in line and "missing toy/train.npz, toy/test.npz" in line
    assert "write toy/train.npz and toy/test.npz there" in line and "--fetch" not in line.split("->")[1]
    # --fetch does not try: the user's own files cannot be downloaded (and nothing is written).
    result = run_cli(["prepare", str(spec), "--fetch"], work, data_root=data, hf_cache=cache)
    assert result.returncode == 1 and "could not fetch dataset arrays:toy: nothing to fetch" in result.stderr
    assert tree(data) == []
    (data / "toy").mkdir()
    for split in SPLITS:
        (data / "toy" / f"{split}.npz").write_bytes(b"x")
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 0 and f"(arrays in data root {data})" in lines_of(result.stdout, "dataset")[0]
    assert required_paths("arrays:toy") == ("toy/train.npz", "toy/test.npz")


@pytest.mark.parametrize("name", FILE_DATASETS)
@pytest.mark.parametrize("split", SPLITS)
def test_an_arrays_file_stands_for_its_split_of_any_file_dataset(tmp_path, name, split):
    root, empty = tmp_path / "root", tmp_path / "empty"
    (root / name).mkdir(parents=True)
    (root / name / f"{split}.npz").write_bytes(b"x")
    assert missing_paths(name, root, [split]) == []
    # The other split still needs the registry's files: what an empty root misses.
    other = [s for s in SPLITS if s != split]
    assert missing_paths(name, root, other) == [root / p.relative_to(empty) for p in missing_paths(name, empty, other)]


@pytest.mark.parametrize("name", FILE_DATASETS)
@pytest.mark.parametrize("split", SPLITS)
def test_the_loader_refuses_exactly_what_the_registry_says_is_missing(tmp_path, name, split):
    from trainables.data import load_dataset
    from trainables.errors import DataNotFoundError

    # Everything but the last required path: the loader names that one, as the check does.
    *present, last = required_paths(name, [split])
    for relative in present:
        path = tmp_path / relative
        path.mkdir(parents=True, exist_ok=True) if relative.endswith("/") else path.write_bytes(b"x")
    assert missing_paths(name, tmp_path, [split]) == [tmp_path / last]
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, split, root=tmp_path)
    assert f"(looked for {tmp_path / last})" in str(info.value)


def test_registry_lists_torchvisions_own_files():
    import torchvision.datasets as tvd

    for name, stock in (("cifar10", tvd.CIFAR10), ("cifar2", tvd.CIFAR10), ("cifar100", tvd.CIFAR100)):
        files = [f for f, _ in stock.train_list + stock.test_list] + [stock.meta["filename"]]
        assert required_paths(name) == (f"{stock.base_folder}/", *(f"{stock.base_folder}/{f}" for f in files))
    for split in SPLITS:
        assert required_paths("svhn", [split]) == (tvd.SVHN.split_list[split][1],)
    assert required_paths("stl10")[0] == f"{tvd.STL10.base_folder}/"
    assert required_paths("digits") == () and required_paths("digits2") == ()


# --- models: hub cache, local folders, allow_download, pseudo-label models ------------------------


def test_hub_foundation_in_the_cache_is_present_and_absent_is_missing_with_the_command(places, tmp_path):
    data, cache, work = places
    snapshot = hub_cache(cache, "cropd-tests/tiny-vit-mae")
    spec = write_spec(
        tmp_path / "hub.yaml", {"data": {"dataset": "digits"}, "foundation": {"name": "cropd-tests/tiny-vit-mae"}}
    )
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 0, result.stdout
    (line,) = lines_of(result.stdout, "foundation")
    assert line.startswith("present") and str(snapshot) in line

    empty = tmp_path / "empty-cache"
    empty.mkdir()
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=empty)
    assert result.returncode == 1
    (line,) = lines_of(result.stdout, "foundation")
    assert line.startswith("MISSING") and "`hf download cropd-tests/tiny-vit-mae`" in line
    assert tree(empty) == []

    # allow_download: the first trial fetches it, so it is not missing.
    spec = write_spec(
        tmp_path / "fetch.yaml",
        {"data": {"dataset": "digits"}, "foundation": {"name": "cropd-tests/tiny-vit-mae", "allow_download": True}},
    )
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=empty)
    assert result.returncode == 0, result.stdout
    assert lines_of(result.stdout, "foundation")[0].startswith("download")
    assert "1 to download" in result.stdout.splitlines()[-1]


def test_local_foundation_folder_without_config_json_is_missing_not_a_traceback(places, tmp_path):
    data, cache, work = places
    folder = tmp_path / "my-foundation"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    spec = write_spec(tmp_path / "local.yaml", {"data": {"dataset": "digits"}, "foundation": {"name": str(folder)}})
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 1
    (line,) = lines_of(result.stdout, "foundation")
    assert line.startswith("MISSING") and str(folder) in line and "config.json" in line
    (folder / "config.json").write_text("{}")
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 0 and lines_of(result.stdout, "foundation")[0].startswith("present")
    # A path that is not there is a missing folder, not a hub name to download.
    spec = write_spec(
        tmp_path / "gone.yaml", {"data": {"dataset": "digits"}, "foundation": {"name": str(tmp_path / "gone")}}
    )
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    (line,) = lines_of(result.stdout, "foundation")
    assert result.returncode == 1 and line.startswith("MISSING") and "no such folder" in line
    assert "hf download" not in line


def test_pseudo_label_model_and_vae_are_listed(places, tmp_path):
    data, cache, work = places
    hub_cache(cache, "cropd-tests/vae")
    advcl = {"kind": "advcl", "pseudo_clusters": 2, "pseudo_model": "cropd-tests/clusters-from"}
    spec = write_spec(
        tmp_path / "models.yaml",
        {"data": {"dataset": "digits"}, "foundation": {"name": "embedded"}},
        grid=[{"preprocessor.kind": ["vae"], "preprocessor.path": ["cropd-tests/vae"]}, _dotted(advcl)],
    )
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 1, result.stdout
    (vae,) = lines_of(result.stdout, "vae")
    (pseudo,) = lines_of(result.stdout, "pseudo_model")
    assert vae.startswith("present") and "[1 trial]" in vae
    assert pseudo.startswith("MISSING") and "hf download cropd-tests/clusters-from" in pseudo


def _dotted(section: dict) -> dict:
    return {f"preprocessor.{key}": [value] for key, value in section.items()}


def test_json_has_the_same_entries_as_the_text(places):
    data, cache, work = places
    spec = str(REPO / "search_spaces" / "transfer.yaml")
    text = run_cli(["prepare", spec], work, data_root=data, hf_cache=cache)
    as_json = run_cli(["prepare", spec, "--format", "json"], work, data_root=data, hf_cache=cache)
    assert as_json.returncode == text.returncode == 1
    report = json.loads(as_json.stdout)
    rows = [line.split() for line in text.stdout.strip().splitlines()[:-1]]
    assert [(r["status"], r["kind"], r["name"]) for r in report["inputs"]] == [tuple(row[:3]) for row in rows]
    by_name = {r["name"]: r for r in report["inputs"]}
    assert by_name["cifar100"]["trials"] == 6 and by_name["cifar10"]["trials"] == 6  # target and source
    assert report["summary"] == {"inputs": 3, "trials": 6, "present": 0, "MISSING": 3, "download": 0}


def test_an_invalid_spec_is_one_line_and_exit_2(places, tmp_path):
    data, cache, work = places
    spec = write_spec(tmp_path / "bad.yaml", {"data": {"dataset": "cifar1"}})
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("orchestrator: error: ") and "data.dataset" in line and str(spec) in line


# --- the shared resolver: a VAE named by a cached hub name --------------------------------------------


def test_vae_path_may_be_a_hub_name_in_the_local_cache(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    cache = tmp_path / "hub"
    snapshot = hub_cache(cache, "cropd-tests/tiny-vae")
    vae = diffusers.AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2, sample_size=32)
    vae.save_pretrained(snapshot)  # config.json and diffusion_pytorch_model.safetensors, as on the hub
    script = """
import sys
from trainables.errors import ConfigError
from trainables.model_folders import VAE_FOLDER, locate_model
from trainables.preprocessors.simple import VAEPreprocessor

print(locate_model("cropd-tests/tiny-vae", VAE_FOLDER, field="preprocessor.path"))
print(VAEPreprocessor("cropd-tests/tiny-vae").path)
try:
    VAEPreprocessor("cropd-tests/not-cached")
except ConfigError as err:
    print(err)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=offline_hub_env(cache, tmp_path / "hf-home"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    located, loaded, refused = result.stdout.strip().splitlines()
    assert located == loaded == str(snapshot)
    assert refused.startswith("preprocessor.path: ") and "hf download cropd-tests/not-cached" in refused


def test_an_embedded_foundation_names_its_data_set_and_the_cifar2_one_needs_the_training_split(places, tmp_path):
    data, cache, work = places
    spec = write_spec(
        tmp_path / "foundations.yaml",
        {"data": {"dataset": "digits"}, "foundation": {"name": "embedded"}},
        grid=[{"foundation.embedded.dataset": ["digits", "cifar2"]}],
    )
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 1, result.stdout  # cifar2's training split is not under the data root
    cifar2, digits = sorted(lines_of(result.stdout, "foundation"))
    assert "embedded digits (shipped with the project" in digits and "[1 trial]" in digits
    assert "embedded cifar2 (pre-trained once by the first trial" in cifar2 and "[1 trial]" in cifar2
    (needed,) = [line for line in lines_of(result.stdout, "dataset") if " cifar2 " in line]
    assert needed.startswith("MISSING") and "[1 trial]" in needed
    (data / "cifar2").mkdir()
    for split in ("train", "test"):
        (data / "cifar2" / f"{split}.npz").write_bytes(b"")  # prepare looks for the files, it does not read them
    result = run_cli(["prepare", str(spec)], work, data_root=data, hf_cache=cache)
    assert result.returncode == 0, result.stdout
