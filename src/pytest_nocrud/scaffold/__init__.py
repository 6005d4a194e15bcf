"""The scaffold wing: ``nocrud scaffold`` -- read an app's OpenAPI schema (``fetch`` starts the app as a
run would; ``drf`` reads a Django REST framework app's schema) and write one ``CrudFlow`` per collection
resource (``render``). Used by that one command only; ``fetch`` is the one module here that reaches
into the wiring (it starts the app through the runtime, so it cannot disagree with a test run).
"""
