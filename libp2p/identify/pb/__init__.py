"""Generated protobuf code for identify messages; regenerate with ``scripts/gen_protos.py``."""
