"""The `webli` command: one subcommand per stage, and `webli run` for all of them."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from typing import Annotated

import typer

from webli.pipeline.cluster import ShardFailures
from webli.pipeline.config import Config, ConfigError, config_to_yaml, load_config
from webli.pipeline.storage import StageDir

log = logging.getLogger("webli")

# Stages in pipeline order: each is `run_<stage>(config) -> stats` in webli.pipeline.<stage>.
STAGE_NAMES = ["crawl", "download", "ocr", "dedup", "score", "select", "train", "card"]


# Steps that are not stages of the flow but run the same way: name -> (module, function).
EXTRA_STEPS = {"bootstrap-filter": ("train", "run_bootstrap_filter")}


def stage_runner(name: str) -> Callable[[Config], dict] | None:
    """The runner of a stage (or extra step), or None if it is not built yet."""
    module_name, function = EXTRA_STEPS.get(name, (name, f"run_{name}"))
    try:
        module = importlib.import_module(f"webli.pipeline.{module_name}")
    except ModuleNotFoundError as err:
        if err.name == f"webli.pipeline.{module_name}":
            return None
        raise
    return getattr(module, function, None)


def implemented_stages() -> list[str]:
    """Stages that exist, in pipeline order."""
    return [name for name in STAGE_NAMES if stage_runner(name) is not None]

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Build a WebLI-style image-text dataset: crawl -> download -> ... -> card.")

ConfigOption = Annotated[str | None, typer.Option("--config", "-c", help="run config YAML")]
OutputOption = Annotated[str | None, typer.Option(help="output root (overrides `output`)")]
SchedulerOption = Annotated[str | None, typer.Option(help="join a Dask cluster at tcp://HOST:PORT")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="override a key: section.key=value")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")]


def resolve_config(config: str | None, output: str | None, scheduler: str | None,
                   overrides: list[str] | None) -> Config:
    """Config file, then --set overrides, then the dedicated flags; saved under the output root."""
    assignments = list(overrides or [])
    if output:
        assignments.append(f"output={json.dumps(output)}")
    if scheduler:
        assignments.append(f"cluster.scheduler={json.dumps(scheduler)}")
    resolved = load_config(config, assignments)
    root = StageDir(resolved.output, "")
    root.fs.makedirs(root.path, exist_ok=True)
    root.write_bytes("config.yaml", config_to_yaml(resolved).encode())
    return resolved


def run_stage(name: str, config: Config) -> dict:
    """Run one stage by name; a stage not built yet is a clear error."""
    runner = stage_runner(name)
    if runner is None:
        raise ConfigError(f"the {name} stage is not implemented yet; implemented stages: {implemented_stages()}")
    log.info("stage %s: starting (output %s)", name, config.output)
    stats = runner(config)
    log.info("stage %s: %s", name, summary_line(stats))
    return stats


def summary_line(stats: dict) -> str:
    """One line: in, out and the largest drop reasons."""
    reasons = ", ".join(f"{k} {v}" for k, v in list(stats.get("dropped_by_reason", {}).items())[:6])
    return f"{stats.get('total', 0)} in, {stats.get('forwarded', 0)} out; dropped: {reasons or 'none'}"


def _main(stages: list[str], config, output, scheduler, overrides, verbose) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("distributed", "urllib3", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        resolved = resolve_config(config, output, scheduler, overrides)
        for name in stages:
            stats = run_stage(name, resolved)
            typer.echo(f"{name}: {summary_line(stats)}")
    except (ConfigError, ShardFailures) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def _stage_command(name: str) -> Callable:
    def command(config: ConfigOption = None, output: OutputOption = None, scheduler: SchedulerOption = None,
                overrides: SetOption = None, verbose: VerboseOption = False) -> None:
        _main([name], config, output, scheduler, overrides, verbose)

    command.__doc__ = f"Run the {name} stage (skips finished shards)."
    return command


for _name in [*STAGE_NAMES, *EXTRA_STEPS]:
    app.command(_name)(_stage_command(_name))


UntilOption = Annotated[str | None, typer.Option(help="stop after this stage")]


@app.command("run")
def run_all(config: ConfigOption = None, output: OutputOption = None, scheduler: SchedulerOption = None,
            overrides: SetOption = None, verbose: VerboseOption = False, until: UntilOption = None) -> None:
    """Run every implemented stage in order, skipping finished work."""
    stages = implemented_stages()
    if until is not None:
        if until not in stages:
            typer.echo(f"error: --until {until}: expected one of {stages}", err=True)
            raise typer.Exit(2)
        stages = stages[: stages.index(until) + 1]
    _main(stages, config, output, scheduler, overrides, verbose)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
