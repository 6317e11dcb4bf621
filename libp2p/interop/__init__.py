"""Tools for running this library in other projects' interoperability suites.

``hole_punch_client`` is the ``hole-punch-client`` (and ``hole-punch-relay``) of the libp2p
test-plans hole-punch suite; ``resp`` and ``redis`` are the small Redis client it coordinates
through (RESP2 and three commands, so that the library needs no Redis package).
"""
