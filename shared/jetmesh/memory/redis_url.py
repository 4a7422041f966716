"""Where Redis is: one server (``redis://``), or a primary found through Sentinels.

``redis+sentinel://[user:password@]host:port,host:port,.../<service>/<db>`` names the
Sentinels that watch the primary called ``<service>`` (``jetmesh`` when left out): a
process asks them where the primary is, and asks again after a failover. The user and
password are the process's own Redis user, given to the data nodes and to the Sentinels
alike (on Sentinels a role's user may only ask where the primary is).

Example:
    >>> target = SentinelTarget.parse("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/jetmesh/0")
    >>> target.sentinels, target.service, target.db
    ((('127.0.0.1', 26379), ('127.0.0.1', 26380)), 'jetmesh', 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["DEFAULT_SERVICE", "SENTINEL_SCHEME", "SentinelTarget", "is_sentinel_url"]

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_SERVICE = "jetmesh"
"""The name Sentinels know the primary by, when the URL gives none."""
SENTINEL_PORT = 26379


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names Sentinels rather than one Redis server."""
    return url.strip().lower().startswith(SENTINEL_SCHEME + "://")


@dataclass(frozen=True)
class SentinelTarget:
    """A primary found through Sentinels.

    Attributes:
        sentinels: (host, port) of each Sentinel, as listed.
        service: The primary's name at the Sentinels.
        db: The database number.
        username: The Redis user, if the URL gives one.
        password: Its password, if the URL gives one.
    """

    sentinels: tuple[tuple[str, int], ...]
    service: str = DEFAULT_SERVICE
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelTarget:
        """Read a ``redis+sentinel://`` URL.

        Raises:
            ValueError: not a Sentinel URL, no Sentinel listed, a malformed host or port, or
                a database that is not a number.
        """
        if not is_sentinel_url(url):
            raise ValueError(f"not a {SENTINEL_SCHEME}:// URL: {url!r}")
        rest = url.strip()[len(SENTINEL_SCHEME) + 3 :]
        netloc, _, path = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        sentinels = tuple(_host_port(h.strip(), url) for h in hosts.split(",") if h.strip())
        if not sentinels:
            raise ValueError(f"no Sentinel in {url!r}")
        service, _, db = path.strip("/").partition("/")
        try:
            number = int(db) if db else 0
        except ValueError:
            raise ValueError(f"database {db!r} in {url!r} is not a number") from None
        return cls(sentinels, service or DEFAULT_SERVICE, number, username, password)

    def url(self) -> str:
        """This target as a URL, without the user and password."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        return f"{SENTINEL_SCHEME}://{hosts}/{self.service}/{self.db}"


def _host_port(text: str, url: str) -> tuple[str, int]:
    parts = urlsplit("//" + text)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"malformed port in {text!r} of {url!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in {text!r} of {url!r}")
    return parts.hostname, port if port is not None else SENTINEL_PORT
