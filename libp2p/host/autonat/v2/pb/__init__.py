"""Generated protobuf code for AutoNAT v2 (regenerate with ``scripts/gen_protos.py``)."""
