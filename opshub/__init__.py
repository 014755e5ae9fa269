"""The composition root: the ``opshub`` command and the tools that drive hub/ and client/
(serve, replay, bench, demo). The only package that imports both; neither imports it."""
