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
from webli.pipeline.sections.score import BOOTSTRAP_MODEL
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


def pipeline_steps(config: Config) -> list[str]:
    """What `webli run` runs, in order: the implemented stages, and the bootstrap filter before the score
    stage when the score stage uses it (`score.model: bootstrap`)."""
    steps = []
    for name in implemented_stages():
        if name == "score" and config.score.model == BOOTSTRAP_MODEL and stage_runner("bootstrap-filter"):
            steps.append("bootstrap-filter")
        steps.append(name)
    return steps

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


def _main(stages: list[str] | Callable[[Config], list[str]], config, output, scheduler, overrides,
          verbose) -> None:
    """Resolve the config, then run `stages` (a list, or a function of the resolved config) in order."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("distributed", "urllib3", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        resolved = resolve_config(config, output, scheduler, overrides)
        for name in stages(resolved) if callable(stages) else stages:
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
    """Run every implemented stage in order (with the bootstrap filter before score), skipping finished work."""
    known = [*implemented_stages(), *EXTRA_STEPS]
    if until is not None and until not in known:
        typer.echo(f"error: --until {until}: expected one of {known}", err=True)
        raise typer.Exit(2)

    def steps(resolved: Config) -> list[str]:
        planned = pipeline_steps(resolved)
        if until is None:
            return planned
        if until not in planned:
            raise ConfigError(f"--until {until}: not a step of this run (score.model is "
                              f"{resolved.score.model!r}); steps: {planned}")
        return planned[: planned.index(until) + 1]

    _main(steps, config, output, scheduler, overrides, verbose)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
