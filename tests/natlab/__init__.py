"""The NAT lab: real NATs built from Linux network namespaces and nftables (see ``lab.py``)."""
