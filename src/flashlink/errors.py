"""The root of every error flashlink raises on purpose.

Each part has its own ``errors.py`` whose classes derive from :class:`FlashlinkError`, so a
caller can catch everything flashlink means to report with one ``except``::

    FlashlinkError
    ├── flashlink.kube.errors.*        (invalid Pods and interLink messages)
    ├── flashlink.jobscript.errors.*   (a Pod that cannot become a job script)
    ├── flashlink.backends.errors.*    (submission, polling and cancellation failures)
    └── ...                            (one small hierarchy per part)

Third-party exceptions are mapped at the part's boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = ["FlashlinkError"]


class FlashlinkError(Exception):
    """Base class of flashlink's own errors; the message says what failed and what to do next."""
