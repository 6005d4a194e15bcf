"""The report wing: what a person reads. It turns the run's records (``record``: one test's phases,
requests and verdict, plain data that crosses xdist) into the terminal summary (``summary``), the HTML
page (``html``, which embeds its data: ``rundata``), the per-request perf record and its baseline gate
(``perf``), endpoint coverage (``coverage``), with ``routes`` turning concrete paths into route templates;
``merge`` joins a sharded run's pages, coverage files and perf records into one report (``nocrud merge``).

It reads records only: it imports itself, ``errors`` and ``flows.timeline`` (the request records), never
``pg/``, ``app/``, psycopg, httpx or the wiring -- so a report can be rendered from saved records alone.
"""
