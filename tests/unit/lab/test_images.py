"""The lab images' cache keys and references (pure: no buildah, no containerd)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from experiment_lab import images
from experiment_lab.binaries import REPO_ROOT
from experiment_lab.images import (
    ARCHIVES,
    RECIPES,
    Recipe,
    archive_key,
    planned_archives,
    recipe_files,
    recipe_key,
    recipe_keys,
)

RECIPE = Recipe("mlflow", "localhost/experiment-lab/mlflow:3.17.2", ("lab/images/mlflow",))
FILES = {"lab/images/mlflow/Containerfile": b"FROM x\n", "lab/images/mlflow/req.txt": b"a==1\n"}


def test_recipe_key_is_stable_and_short() -> None:
    key = recipe_key(RECIPE, FILES, "base1")
    assert key == recipe_key(RECIPE, dict(reversed(FILES.items())), "base1")
    assert len(key) == 16
    assert int(key, 16) >= 0


@pytest.mark.parametrize(
    ("recipe", "files", "base_key"),
    [
        (RECIPE, {**FILES, "lab/images/mlflow/req.txt": b"a==2\n"}, "base1"),  # content
        (RECIPE, {**FILES, "lab/images/mlflow/extra.txt": b""}, "base1"),  # a new file
        (RECIPE, {"lab/images/mlflow/other": FILES["lab/images/mlflow/req.txt"]}, "base1"),
        (RECIPE, FILES, "base2"),  # the base image changed
        (RECIPE, FILES, None),
        (Recipe("mlflow", "localhost/experiment-lab/mlflow:3.18.0", RECIPE.inputs), FILES, "base1"),
        (Recipe("mlflow", RECIPE.reference, RECIPE.inputs, pins=("-O2",)), FILES, "base1"),
    ],
)
def test_recipe_key_changes_with_any_input(
    recipe: Recipe, files: dict[str, bytes], base_key: str | None
) -> None:
    assert recipe_key(recipe, files, base_key) != recipe_key(RECIPE, FILES, "base1")


def test_archive_key_depends_on_every_member_and_order() -> None:
    assert archive_key("mlflow", ["a", "b"]) == archive_key("mlflow", ["a", "b"])
    assert archive_key("mlflow", ["a", "b"]) != archive_key("mlflow", ["a", "c"])
    assert archive_key("mlflow", ["a", "b"]) != archive_key("mlflow", ["b", "a"])
    assert archive_key("mlflow", ["a"]) != archive_key("pause", ["a"])


def test_recipe_files_walks_directories_and_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "src/pkg/__pycache__").mkdir(parents=True)
    (tmp_path / "src/pkg.egg-info").mkdir()
    (tmp_path / "src/pkg/mod.py").write_text("x = 1\n")
    (tmp_path / "src/pkg/__pycache__/mod.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "src/pkg.egg-info/PKG-INFO").write_text("junk")
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    assert recipe_files(tmp_path, ["Dockerfile", "src"]) == {
        "Dockerfile": b"FROM x\n",
        "src/pkg/mod.py": b"x = 1\n",
    }


def test_a_base_change_reaches_every_image_built_on_it(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for recipe in RECIPES:
        for entry in recipe.inputs:
            (root / entry).parent.mkdir(parents=True, exist_ok=True)
            if not (root / entry).exists():
                (root / entry).write_text(f"{entry}\n")
    before = recipe_keys(root)
    (root / "hack/image/base.sh").write_text("changed\n")
    after = recipe_keys(root)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"python-base", "mlflow", "mlflow-seed", "operator"}


def test_the_repository_recipes_have_keys_and_every_image_is_archived() -> None:
    keys = recipe_keys()
    assert set(keys) == {r.name for r in RECIPES}
    archived = [m for members in ARCHIVES.values() for m in members]
    assert sorted(archived) == sorted(r.name for r in RECIPES if r.name != "python-base")


def test_planned_archives_name_files_by_key(tmp_path: Path) -> None:
    plan = planned_archives(tmp_path, recipe_keys())
    mlflow = plan["mlflow"]
    assert mlflow.references == (images.MLFLOW_IMAGE, images.SEED_MLFLOW_IMAGE)
    assert mlflow.path == tmp_path / f"mlflow-{mlflow.key}.tar"
    assert plan["pause"].references == ("localhost/experiment-lab/pause:3.10",)


def test_references_are_fully_qualified() -> None:
    # containerd stores and the kubelet looks up normalized names: the seed sample's
    # `mlflow:aiscope` is `docker.io/library/mlflow:aiscope`.
    assert images.SEED_MLFLOW_IMAGE == "docker.io/library/mlflow:aiscope"
    for recipe in RECIPES:
        host = recipe.reference.split("/", 1)[0]
        assert host in {"localhost", "docker.io"}, recipe.reference
        assert ":" in recipe.reference.rsplit("/", 1)[1], recipe.reference
    assert images.MLFLOW_IMAGE.endswith(":" + images.MLFLOW_VERSION)


def test_the_seed_sample_names_the_seed_contract_image() -> None:
    sample = Path(__file__).resolve().parents[2] / "fixtures" / "seed-blog-sample.yaml"
    assert "image: mlflow:aiscope" in sample.read_text()


def test_the_mlflow_pin_is_the_one_installed() -> None:
    requirements = (REPO_ROOT / "lab/images/mlflow/requirements.txt").read_text()
    constraints = (REPO_ROOT / "lab/images/mlflow/constraints.txt").read_text()
    assert f"mlflow=={images.MLFLOW_VERSION}" in requirements.splitlines()
    assert f"mlflow=={images.MLFLOW_VERSION}" in constraints.splitlines()


def test_prune_keeps_the_newest_and_the_recently_used(tmp_path: Path) -> None:
    now = time.time()
    ages = {"a": 10, "b": 20, "c": 30, "d": 600, "e": 7200, "f": 9000}  # seconds since last use
    for tag, age in ages.items():
        path = tmp_path / f"mlflow-{tag * 16}.tar"
        path.write_bytes(b"")
        os.utime(path, (now - age, now - age))
    other = tmp_path / f"operator-{'f' * 16}.tar"
    other.write_bytes(b"")
    os.utime(other, (now - 9000, now - 9000))
    images._prune(tmp_path, "mlflow")
    left = sorted(p.name for p in tmp_path.iterdir())
    # a-c are the newest three; d was used within the hour; e and f go; other names stay
    assert left == [f"mlflow-{t * 16}.tar" for t in "abcd"] + [other.name]
