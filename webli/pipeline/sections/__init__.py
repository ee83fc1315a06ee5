"""Config sections, one module per stage, composed into `webli.pipeline.config.Config`."""
