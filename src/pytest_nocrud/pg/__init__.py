"""The PostgreSQL wing: servers (embedded or a DSN), names, the template key, template layers and their
builders, the clone pool and its handoff, the SQL runner. Data flows down it: server -> key -> template
(schema layer -> data layer) -> pool. It imports only itself and ``errors`` -- never pytest, httpx or
another wing -- so it can be driven by a test run, the ``nocrud`` command or a benchmark alike.
"""
