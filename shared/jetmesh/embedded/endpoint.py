"""Where a configured server lives (scheme, host, port, password) and whether it is local.

Example:
    >>> ep = Endpoint.parse("nats://127.0.0.1:4222", default_port=4222)
    >>> (ep.host, ep.port, ep.is_loopback)
    ('127.0.0.1', 4222, True)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Endpoint:
    """One server address taken from a settings URL.

    Attributes:
        url: The URL text as configured (several comma-separated URLs are kept whole).
        scheme: The first URL's scheme, e.g. ``nats`` or ``redis``.
        host: The first URL's host, without IPv6 brackets.
        port: The first URL's port, or the default port.
        password: The first URL's password, unquoted, if any.
        count: How many comma-separated URLs there are.
    """

    url: str
    scheme: str
    host: str
    port: int
    password: str | None
    count: int

    @classmethod
    def parse(cls, url: str, *, default_port: int) -> Endpoint:
        """Parse the first URL of a comma-separated list.

        Args:
            url: One URL, or several separated by commas.
            default_port: Port to use when the URL has none.

        Raises:
            ValueError: If the URL has no host or a malformed port.
        """
        parts = [part.strip() for part in url.split(",") if part.strip()]
        first = urlsplit(parts[0] if parts else "")
        if not first.hostname:
            raise ValueError(f"no host in URL {url!r}")
        password = unquote(first.password) if first.password is not None else None
        port = first.port if first.port is not None else default_port
        return cls(url, first.scheme, first.hostname, port, password, len(parts))

    @classmethod
    def parse_all(cls, url: str, *, default_port: int) -> list[Endpoint]:
        """Parse each URL of a comma-separated list (each with ``count`` 1).

        Raises:
            ValueError: If a URL has no host or a malformed port.
        """
        parts = [part.strip() for part in url.split(",") if part.strip()]
        return [cls.parse(part, default_port=default_port) for part in parts or [url]]

    @property
    def is_loopback(self) -> bool:
        """Whether the host is ``localhost`` or an address in 127.0.0.0/8 or ``::1``."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def require_local(self, scheme: str) -> None:
        """Check that an embedded server can serve this endpoint.

        Args:
            scheme: The scheme the embedded server speaks.

        Raises:
            ValueError: If there are several URLs, the scheme differs, or the host is not a
                loopback address.
        """
        if self.count != 1:
            raise ValueError(f"embedded servers run a single server, not the cluster {self.url!r}")
        if self.scheme != scheme:
            raise ValueError(f"embedded server needs a {scheme}:// URL, got {self.url!r}")
        if not self.is_loopback:
            raise ValueError(
                f"embedded servers listen on loopback only (127.0.0.0/8, ::1, localhost), "
                f"not {self.host!r} from {self.url!r}; start a real server for other hosts"
            )
