"""Relaying: Circuit Relay v2 (:mod:`libp2p.relay.circuit_v2`)."""
