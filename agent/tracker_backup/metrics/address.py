"""`[metrics] listen`: a loopback address and port for the /metrics endpoint."""

from __future__ import annotations

import ipaddress

LOCALHOST_NAMES = ("localhost",)
EXPECTED = "a loopback address and port such as 127.0.0.1:9817, [::1]:9817 or localhost:9817"


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` → (address to bind, port); ValueError (message: what is wrong) otherwise.

    Only loopback addresses are accepted: the endpoint has no authentication, and
    Prometheus on the same host (or a container with the host network) reaches it.
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError("no port")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address must be written in brackets, e.g. [::1]:9817")
    if host.lower() in LOCALHOST_NAMES:
        return "127.0.0.1", int(port_text)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is neither localhost nor an IP address") from None
    if not address.is_loopback:
        raise ValueError(f"{host} is not a loopback address: the endpoint has no authentication")
    return str(address), int(port_text)
