"""The node tier's container images: built locally (no registry), cached by recipe, imported.

No container registry is reachable on the lab's machines, so every image a real Pod runs is
built here with buildah from a recipe in the repository (``lab/images/<name>/``, the operator's
``Dockerfile``), on a Debian base made once with mmdebstrap (``hack/image/base.sh``). The images
are exported into OCI archives (zstd layers; images that share layers share one archive) in
``~/.cache/experiment-operator/images/``, named by a key hashed from their recipes (files, pins
and the keys of the images they build on): a changed recipe rebuilds, an unchanged one is
reused. ``import_images`` loads archives into a containerd's ``k8s.io`` namespace, where the
kubelet finds them with ``imagePullPolicy: IfNotPresent``.

``python -m experiment_lab.images build`` (``make lab-images``) builds them all.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from experiment_lab.binaries import REPO_ROOT

Progress = Callable[[str], None]

ARCHIVE_FORMAT = "oci-archive+zstd/1"  # part of every key: change it when archives change shape
KEY_LABEL = "io.experiment-lab.recipe"
NAMESPACE = "k8s.io"

PYTHON_BASE_IMAGE = "localhost/experiment-operator-base:bookworm"
PAUSE_IMAGE = "localhost/experiment-lab/pause:3.10"
MLFLOW_VERSION = "3.17.2"
MLFLOW_IMAGE = f"localhost/experiment-lab/mlflow:{MLFLOW_VERSION}"
# The seed's sample names `mlflow:aiscope`, which containerd normalizes to this.
SEED_MLFLOW_IMAGE = "docker.io/library/mlflow:aiscope"
PAUSE_CFLAGS = ("-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", '-DVERSION="3.10"')


def _project_version() -> str:
    text = (REPO_ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"$', text, re.MULTILINE)
    return match.group(1) if match else "dev"


OPERATOR_IMAGE = f"localhost/experiment-operator:{_project_version()}"


@dataclass(frozen=True)
class Recipe:
    """How one image is made, and what its key is computed from."""

    name: str
    reference: str
    inputs: tuple[str, ...]  # repository-relative files or directories hashed into the key
    base: str | None = None  # the recipe this one builds on (its key is part of this key)
    base_arg: str = ""  # the build argument that names the base image
    pins: tuple[str, ...] = ()  # anything else that changes the result (compiler flags, ...)
    cold: str = "seconds"  # how long a cold build takes (progress)


OPERATOR_INPUTS = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "src",
    "hack/image",
)
RECIPES: tuple[Recipe, ...] = (  # bases before the recipes built on them
    Recipe("python-base", PYTHON_BASE_IMAGE, ("hack/image/base.sh",), cold="1-3 min"),
    Recipe("pause", PAUSE_IMAGE, ("lab/images/pause",), pins=PAUSE_CFLAGS),
    Recipe(
        "mlflow",
        MLFLOW_IMAGE,
        ("lab/images/mlflow",),
        "python-base",
        "PYTHON_IMAGE",
        cold="6-9 min, pip installs ~95 packages",
    ),
    Recipe("mlflow-seed", SEED_MLFLOW_IMAGE, ("lab/images/mlflow-seed",), "mlflow", "MLFLOW_IMAGE"),
    Recipe("operator", OPERATOR_IMAGE, OPERATOR_INPUTS, "python-base", cold="1-2 min"),
)

# Archive name -> the images it holds. The seed-contract image adds one small layer to the
# MLflow image, so both travel in one archive and are stored and imported once.
ARCHIVES: dict[str, tuple[str, ...]] = {
    "pause": ("pause",),
    "mlflow": ("mlflow", "mlflow-seed"),
    "operator": ("operator",),
}


@dataclass(frozen=True)
class ImageArchive:
    """An archive for ``ctr images import``: the references it holds, its file, its key."""

    name: str
    references: tuple[str, ...]
    path: Path
    key: str


class ImageBuildError(RuntimeError):
    """A tool is missing or a build step failed (the message says which and what to do)."""


def default_cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "experiment-operator" / "images"


# --- keys (pure) --------------------------------------------------------------------------------


def _hash(parts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def recipe_key(recipe: Recipe, contents: Mapping[str, bytes], base_key: str | None) -> str:
    """The key of one image: its identity, its files' bytes and its base's key."""
    files = (f"{p}={hashlib.sha256(contents[p]).hexdigest()}" for p in sorted(contents))
    return _hash((recipe.name, recipe.reference, base_key or "", *recipe.pins, *files))


def archive_key(name: str, image_keys: Iterable[str]) -> str:
    """The key of an archive: its format, its name and the keys of the images it holds."""
    return _hash((ARCHIVE_FORMAT, name, *image_keys))


def archive_file(name: str, key: str) -> str:
    return f"{name}-{key}.tar"


def _is_ignored(relative: str) -> bool:
    parts = relative.split("/")
    return any(p == "__pycache__" or p.endswith((".egg-info", ".pyc")) for p in parts)


def recipe_files(root: Path, inputs: Iterable[str]) -> dict[str, bytes]:
    """The bytes of every file a recipe's inputs name (directories walked; caches skipped)."""
    files: dict[str, bytes] = {}
    for entry in inputs:
        path = root / entry
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in candidates:
            relative = file.relative_to(root).as_posix()
            if not _is_ignored(relative):
                files[relative] = file.read_bytes()
    return files


def recipe_keys(root: Path = REPO_ROOT) -> dict[str, str]:
    """Every image's key, bases first."""
    keys: dict[str, str] = {}
    for recipe in RECIPES:
        base_key = keys[recipe.base] if recipe.base else None
        keys[recipe.name] = recipe_key(recipe, recipe_files(root, recipe.inputs), base_key)
    return keys


def planned_archives(cache: Path, keys: Mapping[str, str]) -> dict[str, ImageArchive]:
    """Every archive's references, path and key (whether or not it exists yet)."""
    recipes = {r.name: r for r in RECIPES}
    plan: dict[str, ImageArchive] = {}
    for name, members in ARCHIVES.items():
        key = archive_key(name, (keys[m] for m in members))
        references = tuple(recipes[m].reference for m in members)
        plan[name] = ImageArchive(name, references, cache / archive_file(name, key), key)
    return plan


# --- building -----------------------------------------------------------------------------------


def _stderr(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def _run(args: Sequence[str | Path], *, capture: bool = False) -> str:
    """Run a tool; its output goes to stderr as progress, or stdout is returned if captured."""
    result = subprocess.run(
        [str(a) for a in args], check=False, stdout=subprocess.PIPE if capture else 2, text=True
    )
    if result.returncode != 0:
        command = " ".join(map(str, args))
        raise ImageBuildError(f"{command} failed (exit {result.returncode}; its output is above)")
    return result.stdout if capture else ""


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise ImageBuildError(f"{tool} not found: run `make lab-packages` as root")


def _stored_key(reference: str) -> str:
    """The recipe key of buildah's stored image ('' when absent or unlabelled)."""
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format",
         f'{{{{index .OCIv1.Config.Labels "{KEY_LABEL}"}}}}', reference],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else ""


def _bud(recipe: Recipe, key: str, context: Path, build_args: Mapping[str, str]) -> None:
    ca = Path(os.environ.get("BUILD_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
    # chroot isolation and the host's network: no CNI bridge or firewall rule is made on the host.
    args: list[str | Path] = ["buildah", "bud", "--isolation=chroot", "--network=host", "--layers"]
    args += ["--label", f"{KEY_LABEL}={key}"]
    if ca.is_file():
        args += ["--secret", f"id=ca,src={ca}"]
    for name, value in build_args.items():
        args += ["--build-arg", f"{name}={value}"]
    _run([*args, "--file", context / "Containerfile", "--tag", recipe.reference, context])


def _build(recipe: Recipe, key: str, base_reference: str) -> None:
    build_args = {recipe.base_arg: base_reference} if recipe.base_arg else {}
    if recipe.name == "python-base":
        _run(["bash", REPO_ROOT / "hack/image/base.sh"], capture=True)
    elif recipe.name == "operator":
        _run(["bash", REPO_ROOT / "hack/image/build.sh", recipe.reference], capture=True)
    elif recipe.name == "pause":
        _need("gcc")
        with tempfile.TemporaryDirectory(prefix="pause-") as tmp:
            source = REPO_ROOT / "lab/images/pause"
            shutil.copy(source / "Containerfile", tmp)
            _run(["gcc", *PAUSE_CFLAGS, "-o", Path(tmp) / "pause", source / "pause.c"])
            _bud(recipe, key, Path(tmp), build_args)
    else:
        _bud(recipe, key, REPO_ROOT / recipe.inputs[0], build_args)


def _export(references: Sequence[str], path: Path) -> None:
    """Write images into one OCI archive (shared layers stored once), atomically."""
    with tempfile.TemporaryDirectory(prefix=f".{path.stem}-", dir=path.parent) as tmp:
        layout = Path(tmp) / "layout"
        for reference in references:
            _run(["buildah", "push", "--quiet", "--compression-format", "zstd",
                  reference, f"oci:{layout}:{reference}"])  # fmt: skip
        partial = Path(tmp) / "archive.tar"
        with tarfile.open(partial, "w") as archive:
            for entry in ("oci-layout", "index.json", "blobs"):
                archive.add(layout / entry, arcname=entry)
        partial.replace(path)


def _prune(cache: Path, name: str, keep: int = 3, grace: float = 3600) -> None:
    """Drop old archives of a name: beyond the newest few, unused for an hour (another
    checkout or test session may be about to import an older key; each use touches its file)."""
    pattern = re.compile(rf"^{re.escape(name)}-[0-9a-f]{{16}}\.tar$")
    archives = sorted(
        (p for p in cache.iterdir() if pattern.match(p.name)),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in archives[keep:]:
        if time.time() - path.stat().st_mtime > grace:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One builder at a time per cache (other checkouts and test sessions share it)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_images(
    progress: Progress = _stderr,
    names: Iterable[str] = tuple(ARCHIVES),
    cache: Path | None = None,
) -> list[ImageArchive]:
    """Return the named archives, building and exporting those that are missing."""
    cache = cache or default_cache_dir()
    wanted = list(dict.fromkeys(names))
    unknown = set(wanted) - set(ARCHIVES)
    if unknown:
        raise ValueError(f"unknown archives {sorted(unknown)}; known: {list(ARCHIVES)}")
    keys = recipe_keys()
    plan = planned_archives(cache, keys)
    recipes = {r.name: r for r in RECIPES}
    done: set[str] = set()

    def stored(recipe: Recipe) -> None:
        """Make sure buildah's storage holds the current image of a recipe (bases first)."""
        if recipe.name in done:
            return
        if recipe.base:
            stored(recipes[recipe.base])
        base = recipes[recipe.base].reference if recipe.base else ""
        if recipe.name == "python-base":
            _build(recipe, keys[recipe.name], base)  # checks its own key; says when it builds
        elif _stored_key(recipe.reference) != keys[recipe.name]:
            progress(f"building {recipe.name}: {recipe.reference} (cold: {recipe.cold})")
            started = time.monotonic()
            _build(recipe, keys[recipe.name], base)
            progress(f"built {recipe.name} in {time.monotonic() - started:.0f} s")
        done.add(recipe.name)

    with _locked(cache):
        for name in wanted:
            archive = plan[name]
            if archive.path.is_file():
                archive.path.touch()  # in use: kept by _prune
                continue
            _need("buildah")
            for member in ARCHIVES[name]:
                stored(recipes[member])
            progress(f"exporting {', '.join(archive.references)} to {archive.path}")
            started = time.monotonic()
            _export(archive.references, archive.path)
            size = archive.path.stat().st_size / 2**20
            progress(f"exported in {time.monotonic() - started:.0f} s ({size:.0f} MiB)")
            _prune(cache, name)
    return [plan[name] for name in wanted]


# --- containerd ---------------------------------------------------------------------------------


def _imported_keys(ctr: Sequence[str]) -> dict[str, str]:
    """Reference -> recipe label of the images in the namespace."""
    listing = _run([*ctr, "images", "list"], capture=True).splitlines()
    keys: dict[str, str] = {}
    for line in listing[1:]:
        fields = line.split()
        for label in fields[-1].split(","):
            name, _, value = label.partition("=")
            if name == KEY_LABEL:
                keys[fields[0]] = value
        keys.setdefault(fields[0], "")
    return keys


def import_images(
    ctr_binary: str | Path,
    containerd_address: str | Path,
    archives: Iterable[ImageArchive],
    progress: Progress = _stderr,
) -> None:
    """Import archives into containerd's ``k8s.io`` namespace (skipping ones already there)."""
    ctr = [str(ctr_binary), "--address", str(containerd_address), "--namespace", NAMESPACE]
    present = _imported_keys(ctr)
    for archive in archives:
        if all(present.get(ref) == archive.key for ref in archive.references):
            progress(f"{', '.join(archive.references)}: already imported")
            continue
        progress(f"importing {', '.join(archive.references)} from {archive.path}")
        started = time.monotonic()
        _run([*ctr, "images", "import", archive.path], capture=True)
        for reference in archive.references:
            _run([*ctr, "images", "label", reference, f"{KEY_LABEL}={archive.key}"], capture=True)
        progress(f"imported in {time.monotonic() - started:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiment_lab.images")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (once per recipe) and export the archives")
    build.add_argument("names", nargs="*", default=list(ARCHIVES), metavar="ARCHIVE")
    sub.add_parser("plan", help="print each archive's references, key and path; build nothing")
    load = sub.add_parser("import", help="build what is missing, then import into a containerd")
    load.add_argument("--ctr", default="ctr")
    load.add_argument("--address", required=True, help="containerd's socket")
    args = parser.parse_args(argv)
    if args.command == "plan":
        for archive in planned_archives(default_cache_dir(), recipe_keys()).values():
            state = "built" if archive.path.is_file() else "missing"
            print(f"{archive.name:9} {state:8} {archive.path}  {' '.join(archive.references)}")
        return 0
    try:
        archives = ensure_images(names=args.names if args.command == "build" else tuple(ARCHIVES))
        if args.command == "import":
            import_images(args.ctr, args.address, archives)
    except ImageBuildError as err:
        _stderr(f"error: {err}")
        return 1
    for archive in archives:
        size = archive.path.stat().st_size / 2**20
        print(f"{archive.path}  {size:6.1f} MiB  {' '.join(archive.references)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
