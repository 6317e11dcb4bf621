"""Connections, streams, the upgrader and the swarm."""
