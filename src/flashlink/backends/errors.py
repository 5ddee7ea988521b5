"""Errors of the backends; the plugin maps them to HTTP answers.

::

    FlashlinkError
    └── BackendError                 any failure talking to a batch system
        ├── BackendUnavailableError  the batch system did not answer (retry later: 503)
        ├── SubmitError              it answered and refused the job (bad request/quota: 4xx/500)
        ├── JobNotFoundError         no such job id in this backend (404; delete treats as done)
        └── InvalidSiteConfigError   a site's configuration is wrong (startup error)

A backend wraps the tool's own error (``CalledProcessError``, ``htcondor2.HTCondorException``)
with ``raise ... from exc`` and puts the tool's stderr in the message.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "InvalidSiteConfigError",
    "JobNotFoundError",
    "SubmitError",
]

from flashlink.errors import FlashlinkError


class BackendError(FlashlinkError):
    """A batch system call failed."""


class BackendUnavailableError(BackendError):
    """The batch system did not answer (daemon down, timeout); the call may be retried."""


class SubmitError(BackendError):
    """The batch system refused a job; retrying the same job will not help."""


class JobNotFoundError(BackendError):
    """The backend does not know this job id."""


class InvalidSiteConfigError(BackendError):
    """A site's configuration names an unknown kind or has an invalid field."""
