"""Loading snippets for the card: webdataset, open_clip and Hugging Face `datasets`.

Each snippet is complete Python that runs as written from the card's folder
(paths are relative to it); the tests run them on a real run's shards.
"""

from __future__ import annotations

from webli.stages.card.shards import ShardSet


def brace_pattern(names: list[str]) -> str:
    """One webdataset/open_clip URL pattern for shard files named NNNNN.tar ('{00000..00002}.tar')."""
    if len(names) == 1:
        return names[0]
    stems = [name.removesuffix(".tar") for name in names]
    if stems != [f"{i:0{len(stems[0])}d}" for i in range(int(stems[0]), int(stems[0]) + len(stems))]:
        return "::".join(names)  # not consecutive: webdataset also takes '::'-separated lists
    return f"{{{stems[0]}..{stems[-1]}}}.tar"


def shard_pattern(shards: ShardSet) -> str:
    return shards.relative(brace_pattern(list(shards.tars)))


def webdataset_snippet(shards: ShardSet) -> str:
    return f'''import webdataset as wds

shards = "{shard_pattern(shards)}"
dataset = wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("jpg", "txt", "json")
for image, alt_text, metadata in dataset:
    print(image.size, metadata["language"], alt_text)
    break
'''


def open_clip_snippet(shards: ShardSet, model: str = "ViT-B-32") -> str:
    return f'''import open_clip
import webdataset as wds

# With a trained model, use the `preprocess` that open_clip.create_model_and_transforms returns.
preprocess = open_clip.image_transform(224, is_train=False)
tokenizer = open_clip.get_tokenizer("{model}")
shards = "{shard_pattern(shards)}"
batches = (wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("jpg", "txt")
           .map_tuple(preprocess, lambda text: tokenizer([text])[0]).batched(16))
images, texts = next(iter(batches))
print(images.shape, texts.shape)
'''


def datasets_snippet(shards: ShardSet) -> str:
    return f'''from datasets import load_dataset

dataset = load_dataset("webdataset", data_files={{"train": "{shards.relative('*.tar')}"}}, split="train")
print(dataset)
print(dataset[0]["txt"], dataset[0]["json"]["language"])
'''


def open_clip_train_command(shards: ShardSet, samples: int) -> str:
    """The open_clip_train command line that trains on these shards (not run by the card)."""
    return (f"python -m open_clip_train.main --dataset-type webdataset \\\n"
            f"    --train-data '{shard_pattern(shards)}' --train-num-samples {samples} \\\n"
            f"    --model ViT-B-32 --batch-size 256 --epochs 10 --workers {min(8, len(shards.tars))}")


def collect_snippets(shards: ShardSet, samples: int) -> dict[str, str]:
    """Every loading snippet for the described shards."""
    return {"webdataset": webdataset_snippet(shards), "open_clip": open_clip_snippet(shards),
            "datasets": datasets_snippet(shards), "open_clip_train": open_clip_train_command(shards, samples)}
