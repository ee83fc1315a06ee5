"""Reading eval sets: images from a folder, tar shards or Parquet; captions from text, JSONL or Parquet.

Everything is read through fsspec, so eval sets may live on any file system
the output root can. Items come out in a deterministic order (sorted file
names, then file order), each with the eval set's own item id:

- folder: the image's path relative to the folder (`val/0001.jpg`);
- tar shards (a path or a glob): the member's key, WebDataset style
  (`00000.tar` member `abc.jpg` -> `abc`), prefixed by the shard name when
  several shards are given;
- Parquet: the `id` (or `key`) column if there is one, else `<file stem>:<row>`;
  images in an `image` column of bytes or of {bytes, path} (Hugging Face's layout).

Captions: one per line (optionally `id<TAB>caption`; else the line number is
the id), JSONL objects or Parquet rows with `caption` or `text` and optional
`id`/`key`/`image_id`. Several captions may share an id (COCO has five).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import pyarrow.parquet as pq

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
ID_COLUMNS = ("id", "key", "image_id")
CAPTION_COLUMNS = ("caption", "text", "alt")


class EvalSetError(ValueError):
    """An eval set's path does not exist or is not one of the supported layouts."""


@dataclass(frozen=True)
class ImagePart:
    """A unit of eval images read by one index-building task: some files of a folder, a tar or a Parquet file."""

    kind: str  # "files", "tar" or "parquet"
    paths: tuple[str, ...]  # fsspec URLs: the files of a folder chunk, or the one tar / Parquet file
    root: str = ""  # the folder, for item ids relative to it
    prefix: str = ""  # item-id prefix (several tar shards)


@dataclass(frozen=True)
class EvalImage:
    """One eval image as read: its id, where it came from, and its bytes (None if unreadable)."""

    item: str
    source: str
    data: bytes | None
    problem: str | None = None


def _url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def expand(location: str) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The file system and the sorted paths a location names (a file, a folder or a glob)."""
    fs, path = fsspec.core.url_to_fs(location)
    if any(ch in path for ch in "*?["):
        return fs, sorted(fs.glob(path))
    if not fs.exists(path):
        raise EvalSetError(f"{location} does not exist")
    return fs, [path]


def image_parts(location: str, part_size: int) -> list[ImagePart]:
    """Split an eval set's images into parts of about `part_size` images (one per tar or Parquet file)."""
    fs, paths = expand(location)
    if len(paths) == 1 and fs.isdir(paths[0]):
        root = paths[0].rstrip("/")
        files = sorted(p for p in fs.find(root) if p.lower().endswith(IMAGE_EXTENSIONS))
        return [ImagePart("files", tuple(_url(fs, p) for p in files[i:i + part_size]), _url(fs, root))
                for i in range(0, len(files), part_size)]
    parts = []
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        prefix = f"{name.rsplit('.', 1)[0]}/" if len(paths) > 1 else ""
        if name.endswith(".tar"):
            parts.append(ImagePart("tar", (_url(fs, path),), prefix=prefix))
        elif name.endswith(".parquet"):
            parts.append(ImagePart("parquet", (_url(fs, path),), prefix=prefix))
        elif name.lower().endswith(IMAGE_EXTENSIONS):
            parts.append(ImagePart("files", (_url(fs, path),), _url(fs, path.rsplit("/", 1)[0])))
        else:
            raise EvalSetError(f"{path}: not a folder, tar shard, Parquet file or image")
    return parts


def fingerprint_entries(location: str | None) -> list[str]:
    """One line per file of an eval set (path, size, modification stamp): what its index depends on."""
    if not location:
        return []
    fs, paths = expand(location)
    files = sorted(p for root in paths for p in (fs.find(root) if fs.isdir(root) else [root]))
    lines = []
    for path in files:
        info = fs.info(path)
        stamp = next((str(info[k]) for k in ("mtime", "LastModified", "ETag", "md5", "created") if k in info), "")
        lines.append(f"{path}\t{info.get('size')}\t{stamp}")
    return lines


def _read_files(part: ImagePart) -> Iterator[EvalImage]:
    for url in part.paths:
        item = url[len(part.root):].lstrip("/") if part.root and url.startswith(part.root) else url.rsplit("/", 1)[-1]
        try:
            with fsspec.open(url, "rb") as f:
                yield EvalImage(item, url, f.read())
        except OSError as err:
            yield EvalImage(item, url, None, f"unreadable: {type(err).__name__}")


def _read_tar(part: ImagePart) -> Iterator[EvalImage]:
    url = part.paths[0]
    try:
        with fsspec.open(url, "rb") as f, tarfile.open(fileobj=io.BytesIO(f.read())) as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_EXTENSIONS)),
                             key=lambda m: m.name)
            for member in members:
                key = member.name.rsplit("/", 1)[-1].split(".", 1)[0]
                yield EvalImage(part.prefix + key, f"{url}:{member.name}", tar.extractfile(member).read())
    except (OSError, tarfile.TarError) as err:
        yield EvalImage(part.prefix + url.rsplit("/", 1)[-1], url, None, f"unreadable_tar: {type(err).__name__}")


def _image_bytes(value) -> bytes | None:
    if isinstance(value, dict):
        value = value.get("bytes")
    return value if isinstance(value, bytes | bytearray) else None


def _read_parquet(part: ImagePart) -> Iterator[EvalImage]:
    url = part.paths[0]
    with fsspec.open(url, "rb") as f:
        table = pq.read_table(f)
    if "image" not in table.column_names:
        raise EvalSetError(f"{url}: Parquet eval images need an `image` column, found {table.column_names}")
    id_column = next((c for c in ID_COLUMNS if c in table.column_names), None)
    ids = [str(v) for v in table.column(id_column).to_pylist()] if id_column else \
        [f"{url.rsplit('/', 1)[-1].rsplit('.', 1)[0]}:{row}" for row in range(table.num_rows)]
    for row, (item, value) in enumerate(zip(ids, table.column("image").to_pylist())):
        data = _image_bytes(value)
        yield EvalImage(part.prefix + item, f"{url}#{row}", data, None if data else "no_image_bytes")


def read_images(part: ImagePart) -> Iterator[EvalImage]:
    """Every image of a part, in order; unreadable ones carry a problem instead of bytes."""
    readers = {"files": _read_files, "tar": _read_tar, "parquet": _read_parquet}
    yield from readers[part.kind](part)


def _caption_rows(url: str) -> Iterator[tuple[str | None, str | None]]:
    name = url.rsplit("/", 1)[-1].lower()
    if name.endswith(".parquet"):
        with fsspec.open(url, "rb") as f:
            table = pq.read_table(f)
        text_column = next((c for c in CAPTION_COLUMNS if c in table.column_names), None)
        if text_column is None:
            raise EvalSetError(f"{url}: Parquet captions need a `caption` or `text` column")
        id_column = next((c for c in ID_COLUMNS if c in table.column_names), None)
        ids = table.column(id_column).to_pylist() if id_column else [None] * table.num_rows
        yield from zip(ids, table.column(text_column).to_pylist())
        return
    with fsspec.open(url, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if name.endswith((".jsonl", ".json")):
                try:
                    record = json.loads(line) if line.strip() else {}
                except json.JSONDecodeError:
                    yield None, None
                    continue
                record = record if isinstance(record, dict) else {}
                item = next((record[c] for c in ID_COLUMNS if c in record), None)
                yield item, next((record[c] for c in CAPTION_COLUMNS if c in record), None)
            elif "\t" in line:
                yield tuple(line.split("\t", 1))
            else:
                yield None, line


def read_captions(location: str) -> Iterator[tuple[str, str | None]]:
    """(item id, caption) for every caption row; rows without usable text have None as caption."""
    fs, paths = expand(location)
    files = sorted(p for root in paths for p in (fs.find(root) if fs.isdir(root) else [root]))
    for path in files:
        url = _url(fs, path)
        stem = url.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        for row, (item, caption) in enumerate(_caption_rows(url)):
            text = caption if isinstance(caption, str) and caption.strip() else None
            yield (str(item) if item is not None else f"{stem}:{row + 1}"), text
