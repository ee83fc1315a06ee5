"""webli-builder: build WebLI-style image-text datasets from the web."""

import os

# Set before img2dataset/albumentations is imported anywhere: it checks PyPI
# for updates at import, never wanted in a pipeline run. (Hugging Face's hub is
# left online: a pipeline run only reaches it to download the weights of an
# open_clip pretrained tag that is not cached, and checks it can first.)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
