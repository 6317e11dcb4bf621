"""A Circuit Relay v2 relay in its own process, for benchmarks/run.py.

    python benchmarks/relay_server.py [--listen MA] [--limited]

Prints ``{"event": "ready", "peer_id": ..., "addrs": [full multiaddrs]}`` once listening and
relays until SIGTERM. Unlimited (``RelayConfig.unlimited()``) unless ``--limited``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

import trio

from libp2p import Host, HostConfig
from libp2p.relay.circuit_v2 import RelayConfig


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0")
    parser.add_argument("--limited", action="store_true", help="go's default limits")
    args = parser.parse_args()
    relay_config = RelayConfig() if args.limited else RelayConfig.unlimited()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Host(
            listen=[args.listen], config=HostConfig(relay_service=relay_config)
        ) as host:
            addrs = [f"{a}/p2p/{host.peer_id}" for a in host.listen_addrs]
            sys.stdout.write(
                json.dumps({"event": "ready", "peer_id": str(host.peer_id), "addrs": addrs}) + "\n"
            )
            sys.stdout.flush()
            async for _signum in signals:
                break


if __name__ == "__main__":
    trio.run(main)
