"""Damaged weights: save_pretrained writes checksums.sha256, from_pretrained names a truncated or altered
weight file; folders without checksums load with a warning. (Remote code: tests/test_modeling_models.py.)"""

import hashlib
import logging
import os
import shutil

import pytest
import torch

from mambacode import MambaCodeForMaskedLM, MambaCodeForRetrieval
from mambacode.modeling.checksums import CHECKSUM_FILE, DamagedWeightsError


@pytest.fixture
def saved(tmp_path, tiny):
    model = MambaCodeForRetrieval(tiny())
    model.save_pretrained(tmp_path / "model")
    return model, tmp_path / "model"


def flip_byte(path, offset=-1):
    with open(path, "r+b") as fh:
        fh.seek(offset, 2)
        byte = fh.read(1)
        fh.seek(offset, 2)
        fh.write(bytes([byte[0] ^ 0x10]))


def test_save_writes_sha256sum_listing(saved):
    _, folder = saved
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert (folder / CHECKSUM_FILE).read_text() == f"{digest}  model.safetensors\n"
    loaded = MambaCodeForRetrieval.from_pretrained(folder)
    torch.testing.assert_close(loaded.mambacode.embeddings.weight, saved[0].mambacode.embeddings.weight)


@pytest.mark.parametrize("keep", ["most", "header", "nothing"])
@pytest.mark.parametrize("with_checksums", [True, False])
def test_truncated_file_is_named(saved, keep, with_checksums):
    _, folder = saved
    path = folder / "model.safetensors"
    size = {"most": os.path.getsize(path) - 100, "header": 5, "nothing": 0}[keep]
    with open(path, "r+b") as fh:
        fh.truncate(size)
    if not with_checksums:
        os.remove(folder / CHECKSUM_FILE)
    with pytest.raises(DamagedWeightsError, match=rf"{path}.*(truncated|header)"):
        MambaCodeForRetrieval.from_pretrained(folder)


@pytest.mark.parametrize("offset", [-1, -2000])
def test_flipped_byte_is_caught_and_named(saved, offset):
    _, folder = saved
    flip_byte(folder / "model.safetensors", offset)
    with pytest.raises(DamagedWeightsError, match=rf"{folder / 'model.safetensors'}: SHA-256 .* differs"):
        MambaCodeForMaskedLM.from_pretrained(folder)
    loaded = MambaCodeForMaskedLM.from_pretrained(folder, verify_weights=False)  # the explicit way around it
    assert loaded is not None


def test_missing_checksum_file_warns_but_loads(saved, caplog):
    model, folder = saved
    os.remove(folder / CHECKSUM_FILE)
    with caplog.at_level(logging.WARNING, logger="mambacode.modeling.checksums"):
        loaded = MambaCodeForRetrieval.from_pretrained(folder)
    assert any(CHECKSUM_FILE in r.getMessage() and "not verified" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(loaded.mambacode.embeddings.weight, model.mambacode.embeddings.weight)


def test_listed_file_missing_and_malformed_listing(saved):
    _, folder = saved
    shutil.copy(folder / CHECKSUM_FILE, folder / "keep")
    with open(folder / CHECKSUM_FILE, "a") as fh:
        fh.write(f"{'0' * 64}  model-extra.safetensors\n")
    with pytest.raises(DamagedWeightsError, match="model-extra.safetensors is listed .* but missing"):
        MambaCodeForRetrieval.from_pretrained(folder)
    (folder / CHECKSUM_FILE).write_text("not a checksum line\n")
    with pytest.raises(DamagedWeightsError, match="line 1"):
        MambaCodeForRetrieval.from_pretrained(folder)


def test_sharded_checkpoint_every_shard_is_listed_and_checked(tmp_path, tiny):
    model = MambaCodeForMaskedLM(tiny())
    model.save_pretrained(tmp_path, max_shard_size="60KB")
    shards = sorted(n for n in os.listdir(tmp_path) if n.endswith(".safetensors"))
    assert len(shards) > 1
    listed = [line.split("  ", 1)[1] for line in (tmp_path / CHECKSUM_FILE).read_text().splitlines()]
    assert listed == sorted(shards + ["model.safetensors.index.json"])
    MambaCodeForMaskedLM.from_pretrained(tmp_path)
    flip_byte(tmp_path / shards[-1])
    with pytest.raises(DamagedWeightsError, match=shards[-1]):
        MambaCodeForMaskedLM.from_pretrained(tmp_path)


def test_hub_cache_download_is_verified(saved, tmp_path, monkeypatch):
    """A repo id resolved from the Hub cache (offline) is checked in its snapshot folder after loading."""
    _, folder = saved
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = tmp_path / "cache" / "models--someone--tiny"
    commit = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    cache = str(tmp_path / "cache")
    MambaCodeForRetrieval.from_pretrained("someone/tiny", cache_dir=cache)
    flip_byte(repo / "snapshots" / commit / "model.safetensors")
    with pytest.raises(DamagedWeightsError, match="model.safetensors: SHA-256"):
        MambaCodeForRetrieval.from_pretrained("someone/tiny", cache_dir=cache)
