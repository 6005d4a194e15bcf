"""The app wing: the app under test -- starting it on a free loopback port with the test database's
environment, waiting until it is ready, capturing its log, noticing when it exits, stopping it with
everything it spawned, proving it uses the test database, and running ``@template_setup`` functions
against an app on a template being built.

``process`` (the app process, readiness, logs, exits), ``database_check`` (does the app use the test
database?), ``setups`` (``@template_setup``), and two scripts run *inside* the app's interpreter, never
imported here: ``django_runserver.py`` (the Django default app command) and ``django_databases.py``
(the effective ``DATABASES``).

It may import ``errors``, ``placeholders``, ``pg/`` (connection info, process helpers) and ``flows/``
(the recorded client the setups use); never the wiring (plugin, fixtures, runtime) or ``report/``.
"""
