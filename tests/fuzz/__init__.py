"""Fuzz targets over the frame codec, the hub's session and the router (issue 16, item 8).

Each target is a hypothesis strategy and a check (``target.Target``): the suite runs a
bounded number of examples of each (test_wire.py, test_routing.py); ``scripts/fuzz`` runs
the same targets for minutes and reports examples/s and any failure with its blob.
"""
