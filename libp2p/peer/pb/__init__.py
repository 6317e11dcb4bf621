"""Generated protobuf code for signed envelopes, peer records and relay reservation vouchers.

Regenerate with ``scripts/gen_protos.py``; never edit the ``_pb2`` files by hand.
"""
