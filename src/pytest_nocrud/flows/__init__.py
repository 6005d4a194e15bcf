"""The flow wing: what a test does against the live app -- steps, CRUD flows, logins, the recorded
client. It may import the root's ``errors`` and the standard HTTP stack (httpx); never ``pg/`` (a flow
knows the app's HTTP API, not its database) and nothing of the wiring (plugin, fixtures, runtime).
Users import these names from ``pytest_nocrud``. (``_moved.install`` gives this package the 0.1 names
of the old ``pytest_nocrud.flows`` module, with a warning.)"""
