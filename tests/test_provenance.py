"""Tests of janus/provenance.py: every field of the provenance dict, checked against its
source (git, package metadata, hashlib), and the refusals that must not raise."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import janus
from janus import provenance

GIT = shutil.which("git")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(GIT is None, reason="git not installed")
def test_git_commit_of_a_checkout_and_its_dirty_flag(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(repo, "rev-parse", "HEAD")
    assert provenance.git_commit(repo) == {"commit": head, "dirty": False}
    assert provenance.git_commit(repo / "a.py") == {"commit": head, "dirty": False}
    (repo / "untracked.txt").write_text("not counted")
    assert provenance.git_commit(repo)["dirty"] is False
    (repo / "a.py").write_text("x = 2\n")
    assert provenance.git_commit(repo) == {"commit": head, "dirty": True}


def test_git_commit_is_unknown_outside_a_checkout_or_without_git(tmp_path: Path,
                                                                  monkeypatch) -> None:
    assert provenance.git_commit(tmp_path) == {"commit": "unknown", "dirty": None}
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on PATH at all
    assert provenance.git_commit() == {"commit": "unknown", "dirty": None}


def test_file_records_hash_stream_and_cap(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # several 1 MiB reads
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    rec = provenance.file_record(big)
    assert rec["size"] == len(data) and rec["hashed"] is True
    assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["mtime"].endswith("+00:00")
    capped = provenance.file_record(big, hash_limit=len(data) - 1)
    assert capped["size"] == len(data) and capped["sha256"] is None and capped["hashed"] is False
    assert capped["mtime"] == rec["mtime"]
    missing = provenance.file_record(tmp_path / "gone")
    assert missing["size"] is None and missing["sha256"] is None and not missing["hashed"]


def test_collect_fields(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("alpha")
    b.write_text("beta")
    config = {"train": {"epochs": 3, "lr": 0.1}, "seeds": [1, 2]}
    prov = provenance.collect(config, [a, b])
    assert prov["janus_version"] == janus.__version__
    assert prov["python"] == platform.python_version()
    assert prov["platform"] == f"{platform.system()}-{platform.machine()}"
    assert prov["dependencies"]["torch"] == torch.__version__
    assert prov["dependencies"]["numpy"] == np.__version__
    assert set(prov["dependencies"]) == set(provenance.DEPENDENCIES)
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    assert prov["config_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    # Key order does not change the hash; a value does.
    assert provenance.config_sha256({"seeds": [1, 2], "train": {"lr": 0.1, "epochs": 3}}) == \
        prov["config_sha256"]
    assert provenance.config_sha256({**config, "seeds": [2, 1]}) != prov["config_sha256"]
    assert [r["path"] for r in prov["inputs"]] == [str(a), str(b)]
    assert [r["sha256"] for r in prov["inputs"]] == [hashlib.sha256(b"alpha").hexdigest(),
                                                     hashlib.sha256(b"beta").hexdigest()]
    assert prov["git_commit"] == provenance.git_commit()["commit"]
    # The inputs digest follows the content of every file.
    b.write_text("Beta")
    assert provenance.collect(config, [a, b])["inputs_sha256"] != prov["inputs_sha256"]
    assert provenance.collect(None)["config_sha256"] is None
    # Plain data: JSON and a weights_only torch.load both take it.
    json.dumps(prov)
    torch.save({"provenance": prov}, tmp_path / "p.pt")
    assert torch.load(tmp_path / "p.pt", weights_only=True)["provenance"] == prov


def test_versions_of_a_missing_distribution_is_none() -> None:
    assert provenance.versions(["numpy", "no-such-dist-xyz"]) == {
        "numpy": np.__version__, "no-such-dist-xyz": None}


def test_footer_lines_name_every_part(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("{}")
    prov = provenance.collect({"k": 1}, [tmp_path / "m.json", tmp_path / "gone.json"])
    text = "\n".join(provenance.footer_lines(prov))
    assert f"git commit: `{prov['git_commit']}`" in text
    assert f"janus {janus.__version__}, python {platform.python_version()}" in text
    assert f"torch {torch.__version__}" in text
    assert f"options sha256: `{prov['config_sha256']}`" in text
    assert "inputs: 2 files, 2 bytes" in text and prov["inputs_sha256"] in text
    assert "1 not hashed" in text


def test_write_is_json(tmp_path: Path) -> None:
    prov = provenance.collect({"k": 1})
    provenance.write(tmp_path / "provenance.json", prov)
    assert json.loads((tmp_path / "provenance.json").read_text()) == prov
