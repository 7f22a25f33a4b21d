"""The Model hub's checkpoint upload: its size limit, stated before anyone tries, and why an import cannot start
when a file did not arrive (Streamlit's uploader refuses a file over its limit in the browser, a bare red "!", so
that file never reaches the script)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.store.imports import MAX_IMPORT_BYTES


def upload_limits() -> tuple[int, str]:
    """The largest file the hub's uploader takes (MB, as Streamlit counts them) and what to do with a bigger one.

    Streamlit's uploader refuses a file over its limit in the browser (a bare red "!" on the file): the file never
    reaches this script, so the limit is stated up front and Import can only name it as the likely reason."""
    server_mb = int(st.get_option("server.maxUploadSize"))
    import_mb = MAX_IMPORT_BYTES // 2**20
    cli = ("import it from the command line instead: `python -m core runs import NAME.safetensors` (NAME.json "
           "beside it; up to 4 GiB); it then shows here like any model")
    if server_mb < import_mb:
        return server_mb, (f"This dashboard runs with `server.maxUploadSize` = {server_mb} MB; restart it with "
                           f"`--server.maxUploadSize {import_mb}` to import files up to {import_mb} MB. For a "
                           f"bigger checkpoint, {cli}.")
    return import_mb, f"A bigger checkpoint cannot be imported in the dashboard; {cli}."


def missing_file_message(weights: list[Any], metas: list[Any], limit_mb: int, bigger: str) -> str | None:
    """Why the uploads are not one .safetensors and one .json file, without blaming the user for a file the
    uploader refused (it never reaches the script); None when they are."""
    for found, kind in ((weights, ".safetensors"), (metas, ".json")):
        if len(found) > 1:
            return (f"Refused: {len(found)} {kind} files ({', '.join(f.name for f in found)}); import one "
                    "checkpoint at a time: remove the extra ones from the list above (their ×).")
    if weights and metas:
        return None
    arrived = f"only {(weights or metas)[0].name} did" if weights or metas else "no file did"
    if not weights:
        return (f"Cannot import: the weights file (NAME.safetensors) did not arrive; {arrived}. If you chose it "
                "and it shows a red “!” in the list above, the uploader refused it, most likely because it is "
                f"larger than the {limit_mb} MB upload limit. {bigger} If you have not chosen it yet, add it.")
    return (f"Cannot import: the metadata file (NAME.json) did not arrive; {arrived}. Add the checkpoint's .json "
            "file (written beside the weights by `python -m core train`, or by the hub's Download JSON). If you "
            f"chose it and it shows a red “!” in the list above, the uploader refused it (the limit is {limit_mb} "
            "MB per file).")
