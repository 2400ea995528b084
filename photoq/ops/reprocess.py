"""`photoq reprocess`: queue the outputs that are missing or stale after the output settings changed.

Each output row records what rendered it (outputs.spec, made by imaging.spec_fingerprint: format, box, and the
quality, WebP method or AVIF speed where the format uses them). An output is
- stale when that fingerprint differs from its spec in today's configuration (another size, format, quality, WebP
  method or AVIF speed);
- missing when a configured output has no row (an output added to the configuration) or its file is gone.
Rows from before schema version 3 know neither fingerprint nor format: they count as fresh when their file exists in
the configured format and has the size the configured box gives the photo, so a changed size or format is caught but
a changed quality or method is not; `--all` renders every selected output again, fresh or not.

Only those outputs are queued, on the photo's job of their kind (jobs.outputs), so the photo keeps its other outputs
and shows the existing ones until the new ones replace them. A photo whose job is already unfinished is not queued
twice (its job takes the names on); a part that failed is left for `photoq retry-failed`. Outputs removed from the
configuration are left alone, files and rows (doctor does not count them either). Safe beside a running server, as
doctor is: photos are read in pages and each page's jobs are written in one transaction.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from .. import imaging
from ..config import Settings
from ..db import Database
from ..models import JobKind, Status
from ..storage import Storage
from ..workers import output_specs
from .doctor import PHOTO_PAGE

# (photo id, kind, output names), dry run -> the outcome of each part: (queued|already|failed|gone, names added)
Submit = Callable[[Sequence[tuple[int, JobKind, Sequence[str]]], bool], Awaitable[list[tuple[str, list[str]]]]]


class UnknownVariant(ValueError):
    """A --variant that is not a configured output."""


def check_variants(settings: Settings, variants: Sequence[str] | None) -> None:
    unknown = [name for name in variants or () if name not in settings.output_names]
    if unknown:
        raise UnknownVariant(
            f"unknown output {', '.join(map(repr, unknown))}; configured outputs: {', '.join(settings.output_names)}")


def settings_fingerprints(settings: Settings) -> dict[str, str]:
    """Every configured output's fingerprint: what a server must render with for a reprocess it runs to match ours."""
    return {spec.name: imaging.spec_fingerprint(spec) for spec in output_specs(settings.outputs, settings)}


@dataclass
class ReprocessResult:
    dry_run: bool
    queued: Counter = field(default_factory=Counter)  # output name -> photos it was queued for
    photos: int = 0  # photos with at least one output queued
    already_queued: int = 0  # outputs an unfinished job renders anyway
    skipped_failed: int = 0  # photos whose part failed: left for retry-failed

    def as_dict(self) -> dict:
        return {"queued": sum(self.queued.values()), "outputs": dict(sorted(self.queued.items())),
                "photos": self.photos, "already_queued": self.already_queued,
                "skipped_failed": self.skipped_failed, "dry_run": self.dry_run}


def describe(result: dict, where: str) -> str:
    """The report printed by the command, from ReprocessResult.as_dict (ours, or a running server's answer)."""
    verb = "would queue" if result["dry_run"] else "queued"
    lines = [f"{verb} {result['queued']} output(s) of {result['photos']} photo(s){where}"]
    lines += [f"  {name}: {count}" for name, count in result["outputs"].items()]
    if result["already_queued"]:
        lines.append(f"{result['already_queued']} output(s) already queued by unfinished jobs")
    if result["skipped_failed"]:
        lines.append(f"{result['skipped_failed']} failed photo(s) left alone: `photoq retry-failed` queues them")
    if not result["queued"]:
        lines.append("nothing is missing or stale")
    return "\n".join(lines)


class Reprocessor:
    def __init__(self, settings: Settings, db: Database, storage: Storage, submit: Submit):
        self.db = db
        self.storage = storage
        self.submit = submit
        self.specs = {str(kind): output_specs(settings.outputs_for(str(kind)), settings) for kind in JobKind}
        self.fingerprints = settings_fingerprints(settings)

    async def run(self, variants: Sequence[str] | None = None, album_id: int | None = None,
                  everything: bool = False, dry_run: bool = False) -> ReprocessResult:
        result = ReprocessResult(dry_run)
        chosen = set(variants) if variants else None
        specs = {kind: [s for s in kind_specs if chosen is None or s.name in chosen]
                 for kind, kind_specs in self.specs.items()}
        after = 0
        while True:
            page = await self.db.reprocess_photos_page(after, PHOTO_PAGE, album_id)
            if not page:
                return result
            after = page[-1]["id"]
            parts = await asyncio.to_thread(self._due, page, specs, everything)
            if parts:
                self._count(result, parts, await self.submit(parts, dry_run))

    def _due(self, page: list[dict], specs: dict, everything: bool) -> list[tuple[int, JobKind, list[str]]]:
        """The (photo id, kind, output names) to render again on this page. Runs in a thread: it looks at files."""
        parts = []
        for photo in page:
            for kind in JobKind:
                names = [spec.name for spec in specs[str(kind)] if everything or not self._fresh(photo, spec)]
                if names:
                    parts.append((photo["id"], kind, names))
        return parts

    def _fresh(self, photo: dict, spec: imaging.OutputSpec) -> bool:
        row = photo["outputs"].get(spec.name)
        if row is None:
            return False
        if row["spec"] is not None:
            return row["spec"] == self.fingerprints[spec.name] and \
                self.storage.variant_path(photo["id"], spec.name, row["format"]).is_file()
        # Recorded before outputs remembered their settings: compare what can be seen.
        size = imaging.output_size((photo["width"], photo["height"]), spec)
        return (row["width"], row["height"]) == size and \
            self.storage.variant_path(photo["id"], spec.name, spec.format).is_file()

    @staticmethod
    def _count(result: ReprocessResult, parts, outcomes) -> None:
        queued_photos, failed_photos = set(), set()
        for (photo_id, _kind, names), (outcome, added) in zip(parts, outcomes, strict=True):
            if outcome == "queued":
                result.queued.update(added)
                result.already_queued += len(names) - len(added)
                queued_photos.add(photo_id)
            elif outcome == "already":
                result.already_queued += len(names)
            elif outcome == Status.FAILED:
                failed_photos.add(photo_id)
        result.photos += len(queued_photos)
        result.skipped_failed += len(failed_photos)
