"""The health endpoint's check for django-health-check 4 (`pip install django-dbconfig[health-check]`).

```python
path("health/", HealthCheckView.as_view(checks=["django_dbconfig.contrib.health_check.Databases"]))
```
Every alias (or those named in `aliases`) is probed on the application's own
connections, each bounded by its connect timeout, and cached as the endpoint is.
"""

from __future__ import annotations

import dataclasses
import datetime

try:
    from health_check.base import HealthCheck
    from health_check.exceptions import ServiceUnavailable
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "django_dbconfig.contrib.health_check needs django-health-check 4: "
        "pip install 'django-dbconfig[health-check]'"
    ) from exc

from django.db import connections

from django_dbconfig.health.status import check_aliases, runtime_aliases_probed
from django_dbconfig.runtime.databases import is_runtime


@dataclasses.dataclass
class Databases(HealthCheck):  # type: ignore[misc]  # health_check is untyped
    """Every alias answers on its own connection; failures name the alias, never the error text.

    Args:
        aliases: the aliases to check; empty (the default) means every alias of DATABASES, and
            the runtime aliases with `DBCONFIG_HEALTH_RUNTIME_ALIASES = True` (counted, not named).
    """

    aliases: tuple[str, ...] = ()
    # Above any alias's connect timeout: each alias is bounded by its own, plus a margin.
    timeout: datetime.timedelta = dataclasses.field(default=datetime.timedelta(seconds=10), repr=False)

    def run(self) -> None:

        unknown = [alias for alias in self.aliases if alias not in connections]
        if unknown:
            raise ServiceUnavailable(f"No such database alias: {', '.join(unknown)}")
        every = runtime_aliases_probed()
        aliases = self.aliases or tuple(alias for alias in connections if every or not is_runtime(alias))
        failed = [result.alias for result in check_aliases(aliases) if not result.ok]
        # Tenants' names are not shown unless they were asked for by name.
        named = [alias for alias in failed if self.aliases or not is_runtime(alias)]
        if len(named) < len(failed):
            named.append(f"{len(failed) - len(named)} runtime database(s)")
        if failed:
            # The reason (scrubbed) is in the log and, for staff, in the endpoint's JSON.
            raise ServiceUnavailable(f"Database unavailable: {', '.join(named)}")
