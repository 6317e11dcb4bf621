"""The host: identity, listeners, connections, handlers, peerstore and events in one object."""

from .host import Host, HostConfig

__all__ = ["Host", "HostConfig"]
