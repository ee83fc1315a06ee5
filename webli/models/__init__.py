"""Model config JSON files shipped with webli-builder (open_clip's format; the file stem is the model name).

`webli-tiny`: a ViT of 4 layers, width 128, on 64 px images in 8 px patches,
and a text transformer of 3 layers, width 128, context 48 (open_clip's CLIP
BPE tokenizer, byte fallback for any script); 128-d embeddings, 7.8M
parameters (6.3M of them the token embedding). About 100 training samples
per CPU-second, so a few thousand pairs train for 10 epochs in minutes on
two cores. Register it with
`webli.stages.train.models.register_model_config("webli-tiny")`.
"""
