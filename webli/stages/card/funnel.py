"""The funnel: every stage's rows in and out and every drop reason, from the stages' own stats.

Steps, in order: crawl (image candidates -> pairs), plan (pairs deduplicated
across crawl shards, from download/_plan/plan.json), download (planned rows
-> images), the metadata stages ocr, dedup and score (they drop nothing),
select, and the trainers that read the data without changing it (the
bootstrap filter on the downloads, the reference trainer on its `train.data`).
Each step is checked (drops by reason add up to in - out) and linked to the
step it reads (its rows in equal that step's rows out), so the card shows any
inconsistency instead of hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from webli.pipeline.storage import sum_stats
from webli.stages.card.outputs import COMPLETE, SIDECAR_STAGES, RunOutputs, StageProgress, stage_progress
from webli.stages.select.join import DOWNLOAD_FAILED

PLAN_DUPLICATES = "duplicate_across_crawl_shards"
FILTER, METADATA, TRAINER = "filter", "metadata", "trainer"  # kinds of step
# Which step's output each step reads (train: see `upstream_of`).
UPSTREAM = {"plan": "crawl", "download": "plan", "ocr": "download", "dedup": "download", "score": "download",
            "select": "download", "bootstrap_filter": "download"}
# Trainer steps: (step, folder); each writes `stats.json` (the stats vocabulary) when done.
TRAINERS = (("bootstrap_filter", "bootstrap_filter"), ("train", "train"))


@dataclass
class FunnelStep:
    """One step of the funnel: rows in, rows out, drops by reason, and where the numbers come from."""

    step: str
    rows_in: int
    rows_out: int
    dropped_by_reason: dict[str, int]
    source: str
    kind: str = FILTER
    status: str = COMPLETE
    extra: dict = field(default_factory=dict)
    problems_by_reason: dict[str, int] = field(default_factory=dict)  # rows kept with a problem

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_reason.values())

    def as_dict(self) -> dict:
        return {"step": self.step, "in": self.rows_in, "out": self.rows_out, "dropped": self.dropped,
                "dropped_by_reason": self.dropped_by_reason, "source": self.source, "kind": self.kind,
                "status": self.status, "problems_by_reason": self.problems_by_reason, **self.extra}


@dataclass(frozen=True)
class Check:
    """One consistency check of the funnel."""

    description: str
    expected: int
    found: int

    @property
    def ok(self) -> bool:
        return self.expected == self.found

    def as_dict(self) -> dict:
        return {"check": self.description, "expected": self.expected, "found": self.found, "ok": self.ok}


def sum_reasons(records) -> dict[str, int]:
    """Counts by reason summed over records, largest first."""
    summed: dict[str, int] = {}
    for record in records:
        for reason, count in record.items():
            summed[reason] = summed.get(reason, 0) + count
    return dict(sorted(summed.items(), key=lambda kv: (-kv[1], kv[0])))


def step_from_stats(step: str, shard_stats: list[dict], progress: StageProgress, source: str,
                    kind: str = FILTER) -> FunnelStep:
    """A funnel step from a stage's per-shard stats (the stats vocabulary, summed)."""
    total = sum_stats(shard_stats)
    problems = sum_reasons(s.get("problems_by_reason", {}) for s in shard_stats)
    return FunnelStep(step, total["total"], total["forwarded"], total["dropped_by_reason"], source, kind,
                      progress.status, {"shards": total["shards"]}, problems)


def plan_step(plan: dict) -> FunnelStep:
    """The download plan as a step: crawled pairs in, unique pairs out (download/_plan/plan.json)."""
    duplicates = plan.get("duplicates_across_crawl_shards", 0)
    return FunnelStep("plan", plan["rows"] + duplicates, plan["rows"],
                      {PLAN_DUPLICATES: duplicates} if duplicates else {}, "download/_plan/plan.json",
                      extra={"shards": plan["shards"]})


def select_step(selection: dict) -> FunnelStep:
    """The selection as a step, from select/selection.json.

    select counts every download row and drops the failed downloads again as
    `download_failed`; those are the download step's drops, so here they are
    taken out of select's rows in (and checked against the download step).
    """
    drops = dict(selection.get("dropped_by_reason", {}))
    failed = drops.pop(DOWNLOAD_FAILED, 0)
    return FunnelStep("select", selection["total"] - failed, selection["selected"], drops, "select/selection.json",
                      extra={DOWNLOAD_FAILED: failed, "eligible": selection.get("eligible")})


def trainer_step(step: str, folder: str, stats: dict) -> FunnelStep:
    """A trainer as a step: the samples of the shards it read in, those it trained or evaluated on out."""
    return FunnelStep(step, stats["total"], stats["forwarded"], dict(stats.get("dropped_by_reason", {})),
                      f"{folder}/stats.json", TRAINER, problems_by_reason=dict(stats.get("problems_by_reason", {})))


def read_funnel(outputs: RunOutputs) -> list[FunnelStep]:
    """Every step that has output, in pipeline order."""
    steps = []
    for stage in ("crawl", "download", *SIDECAR_STAGES):
        if stage == "download" and (plan := outputs.read_json("download", "_plan/plan.json")):
            steps.append(plan_step(plan))
        stats = list(outputs.shard_stats(stage).values())
        if stats:
            steps.append(step_from_stats(stage, stats, stage_progress(outputs, stage), f"{stage}/NNNNN_stats.json",
                                         METADATA if stage in SIDECAR_STAGES else FILTER))
    if (selection := outputs.read_json("select", "selection.json")) is not None:
        steps.append(select_step(selection))
    for step, folder in TRAINERS:
        if (stats := outputs.read_json(folder, "stats.json")) is not None:
            steps.append(trainer_step(step, folder, stats))
    return steps


def upstream_of(step: str, train_data: str) -> str | None:
    """The step whose output a step reads; for the reference trainer, its `train.data` ('select' or
    'download'; a glob of other shards has no upstream step)."""
    if step == "train":
        return train_data if train_data in ("select", "download") else None
    return UPSTREAM.get(step)


def funnel_checks(steps: list[FunnelStep], train_data: str = "select") -> list[Check]:
    """Drops add up within each step; each complete step reads what its upstream step forwarded."""
    by_name = {s.step: s for s in steps}
    checks = [Check(f"{s.step}: dropped by reason = in - out", s.rows_in - s.rows_out, s.dropped) for s in steps]
    checks += [Check(f"{s.step}: drops nothing (out = in)", s.rows_in, s.rows_out) for s in steps
               if s.kind == METADATA]
    for step in steps:
        upstream = by_name.get(upstream_of(step.step, train_data) or "")
        if upstream is not None and step.status == upstream.status == COMPLETE:
            checks.append(Check(f"{step.step}: in = {upstream.step} out", upstream.rows_out, step.rows_in))
    if "select" in by_name and "download" in by_name and by_name["download"].status == COMPLETE:
        checks.append(Check(f"select: its {DOWNLOAD_FAILED} rows = download dropped", by_name["download"].dropped,
                            by_name["select"].extra[DOWNLOAD_FAILED]))
    return checks
