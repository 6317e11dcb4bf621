"""Generated protobuf code for AutoNAT v1 (regenerate with ``scripts/gen_protos.py``)."""
