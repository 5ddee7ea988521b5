"""What a job script embeds to get its image through the cache: a bash function (curl only).

``flashlink.jobscript`` renders :func:`fetch_function` into a job script and calls
``flashlink_fetch_image "$URL" "$TOKEN" "$REFERENCE" "$NODE_CACHE_DIR"``; on success it runs the
printed SIF, on failure it falls back to ``docker://``. The protocol is the one
:meth:`flashlink.images.client.ImagesClient.fetch_cached` speaks (docs/images.md).
"""

from __future__ import annotations

__all__ = ["fetch_function"]

from importlib import resources


def fetch_function() -> str:
    """The text of the ``flashlink_fetch_image`` bash function."""
    return resources.files("flashlink.images").joinpath("fetch_image.sh").read_text()
