"""Generated protobuf code for libp2p key envelopes; regenerate with ``scripts/gen_protos.py``."""
