"""webli-builder: build WebLI-style image-text datasets from the web."""

import os

# Set before img2dataset/albumentations or huggingface_hub are imported anywhere:
# albumentations checks PyPI for updates at import, and hub look-ups retry for
# ~23 s without a network. Neither is ever wanted in a pipeline run.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"
