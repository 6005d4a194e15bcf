"""``runserver`` that does not keep its startup database connection open.

Django's runserver checks for unapplied migrations at startup on the main thread and never closes
that connection (CONN_MAX_AGE only applies to request threads). An idle session left on the
database would block the harness from renaming/dropping it between tests, so close it right away.
"""

from django.core.management.commands.runserver import Command as RunserverCommand
from django.db import connections


class Command(RunserverCommand):
    def check_migrations(self) -> None:
        try:
            super().check_migrations()
        finally:
            connections.close_all()
