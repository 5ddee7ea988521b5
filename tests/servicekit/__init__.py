"""Start and stop the real test services (Slurm, HTCondor, S3, ...) from pytest.

Each service is a bash script ``ci/services/<name>.sh`` (install/check/start/stop, see
``ci/lib.sh``); this package only calls those scripts, so what a test starts is exactly what a
developer starts by hand with ``./dev service <name> start``.
"""

from __future__ import annotations

__all__ = ["SERVICES", "Service", "ServiceUnavailableError", "check", "start"]

from servicekit._service import SERVICES, Service, ServiceUnavailableError, check, start
