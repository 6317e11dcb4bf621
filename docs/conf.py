"""Sphinx configuration for the trio-libp2p-nat documentation.

Built with warnings as errors by the test suite (``tests/docs``) and by hand::

    sphinx-build -W --keep-going -b html docs docs/_build/html

No network access is needed: no intersphinx, no external themes, no JavaScript from a CDN.
"""

from __future__ import annotations

import os
import sys

# Import the library from this checkout (autodoc), whether or not it is installed.
sys.path.insert(0, os.path.abspath(".."))

project = "trio-libp2p-nat"
author = "trio-libp2p-nat contributors"
copyright = "trio-libp2p-nat contributors"
release = "0.1.0.dev0"
version = "0.1"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "snippets", ".gitignore"]
templates_path: list[str] = []

# autodoc: members in source order, with the class docstring and __init__ signature together.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_class_signature = "mixed"
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "undoc-members": True,
}
# Every cross-reference to this library must resolve (warnings are errors), so a renamed class
# or a typo in a docstring fails the build. Names from other libraries (trio, multiaddr, the
# standard library...) cannot be linked without intersphinx, which would need the network:
# those are exempt, and so are internal modules that are not part of the public API.
nitpicky = True
_EXTERNAL = (
    r"(trio|multiaddr|collections|contextlib|enum|os|abc|ipaddress|typing|argparse|coincurve|cryptography|rsa|ec"
    r"|_ed25519)(\..+)?"
)
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    (
        r"py:.*",
        r"(Multiaddr|HalfCloseableStream|AsyncResource|SendStream|ReceiveStream|Stream|Path"
        r"|YamuxStream|YamuxConfig|TcpTransport|TcpStream)(\..+)?",
    ),
    (r"py:.*", r"libp2p\.(stream_muxer|security|io|multistream)\..+"),
    (r"py:.*", r"libp2p\.transport\.tcp\.TcpStream"),
    # Type variables of EventBus.subscribe's overloads.
    (r"py:.*", r"libp2p\.events\._T\d"),
    # Internals that public modules' docstrings name. Documenting them next to the public
    # names would break viewcode's links back (one page anchor prefix per source module).
    (r"py:.*", r"(punch_dial_timeout|redial_pause|timestamp_seq|random\.Random)"),
    # The narrow host interfaces services are typed with (Host satisfies them).
    (
        r"py:.*",
        r"(HolePunchHost|AutoNATServerHost|AutoNATClientHost|AutoNATv2ServerHost"
        r"|AutoNATv2ClientHost|PortMapperHost)",
    ),
    # The port mapper core's actions and results (internals of libp2p.portmap.mapper).
    (
        r"py:.*",
        r"(libp2p\.portmap\.mapper\.)?(Discover|Map|Unmap|MapSuccess|MapError|GatewayAnswer"
        r"|Action)",
    ),
    # The answer type of udp_exchange's accept function.
    (r"py:.*", r"libp2p\.portmap\.client\.T"),
]

pygments_style = "friendly"

html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = "trio-libp2p-nat"
html_short_title = "trio-libp2p-nat"
html_show_sourcelink = False
html_theme_options = {
    "description": "libp2p on trio, built for NAT traversal",
    "page_width": "1240px",
    "sidebar_width": "240px",
    "fixed_sidebar": False,
    "show_relbars": True,
    "github_button": False,
}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}


def _resolve_by_suffix(app, env, node, contnode):  # type: ignore[no-untyped-def]
    """Resolve ``:class:`Name``` and friends to the one documented object named ``Name``.

    Docstrings name objects where they are defined (``HolePunchConfig`` in
    ``libp2p.relay.circuit_v2.dcutr``), or by their re-export (``libp2p.HostConfig``), while
    this reference documents each once, at its public home
    (``libp2p.relay.circuit_v2.HolePunchConfig``). Try the target's dotted tails, longest
    first, and link when exactly one documented object of a fitting type ends with one.
    """
    if node.get("refdomain") != "py":
        return None
    from sphinx.util.nodes import make_refnode

    domain = env.get_domain("py")
    objtypes = set(domain.objtypes_for_role(node["reftype"]) or ())
    if node["reftype"] in ("class", "obj"):
        objtypes |= {"data"}  # type aliases such as StreamHandler
    parts = node["reftarget"].lstrip(".~").split(".")
    for start in range(len(parts)):
        tail = ".".join(parts[start:])
        matches = {
            name: obj
            for name, obj in domain.objects.items()
            if (name == tail or name.endswith("." + tail))
            and obj.objtype in objtypes
            and not obj.aliased
        }
        if len(matches) == 1:
            ((name, obj),) = matches.items()
            return make_refnode(
                app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, name
            )
        if matches:
            return None  # ambiguous: let nitpicky report it
    return None


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("missing-reference", _resolve_by_suffix)
