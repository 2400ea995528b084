"""Storage rules that the queue relies on."""

from __future__ import annotations

from photoq.storage import Storage


async def test_clearing_one_jobs_partial_outputs_spares_the_other_jobs_files(tmp_path):
    # A photo's thumbnail job and variant job may run at once and share the photo's output folder.
    storage = Storage(tmp_path)
    storage.prepare()
    folder = storage.variant_dir(7)
    folder.mkdir(parents=True)
    mine = folder / ".thumb-150.0123abcd.tmp"
    theirs = folder / ".display-1080x1920.89abcdef.tmp"
    finished = folder / "thumb-300.webp"
    for path in (mine, theirs, finished):
        path.write_bytes(b"x")
    await storage.remove_partial_outputs(7, ["thumb-150", "thumb-300", "thumb-600"])
    assert not mine.exists()
    assert theirs.exists() and finished.exists()


async def test_missing_output_folder_is_fine(tmp_path):
    storage = Storage(tmp_path)
    storage.prepare()
    await storage.remove_partial_outputs(8, ["thumb-150"])
