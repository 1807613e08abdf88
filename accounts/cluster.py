"""Redis Cluster: the client for a ``redis+cluster://`` URL, and the few places where a cluster
client must be used differently from one server (docs/accounts.md "Redis Cluster").

Every key of an account carries its root's hash tag ``{a:<root>}``, so each account script and
each MULTI of the store touches one slot. What spans slots (the index keys ``acct:<id>`` and
``msisdn:<n>``, the expiry index ``rsv:expiry``) is read key by key (``get_many``), and a
pipeline that mixes slots runs its commands in order (``accounts.scripts``).
"""

from __future__ import annotations

from urllib.parse import unquote

import redis
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.exceptions import RedisClusterException

SCHEMES = ("redis+cluster", "rediss+cluster")  # rediss+cluster: TLS to every node
DEFAULT_PORT = 6379
MAX_NODES = 64  # startup nodes in one URL


def is_cluster(client) -> bool:
    """A Redis Cluster client (or one of its pipelines)."""
    return isinstance(client, RedisCluster)


def is_cluster_pipeline(pipe) -> bool:
    return isinstance(pipe, ClusterPipeline)


def get_many(r, keys: list[str]) -> list:
    """GET of every key, in order: one MGET on one server; on a cluster, one MGET per slot
    (the keys are global index keys, each in its own slot)."""
    if not keys:
        return []
    if is_cluster(r):
        return r.mget_nonatomic(keys)
    return r.mget(keys)


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES


def _nodes(url: str, bad) -> tuple[list[ClusterNode], str | None, str | None, bool]:
    """(startup nodes, username, password, tls) of ``scheme://[user[:password]@]host[:port][,...]``."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in SCHEMES:
        raise bad("the scheme must be redis+cluster:// or rediss+cluster://")
    if any(c in rest for c in "?#"):
        raise bad("a cluster URL takes no options (?...) or fragment (#...)")
    rest = rest.rstrip("/")
    if "/" in rest:
        raise bad("a cluster has one database, 0: no /<database> after the nodes")
    userinfo, at, hosts = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    items = hosts.split(",")
    if len(items) > MAX_NODES:
        raise bad(f"at most {MAX_NODES} nodes, got {len(items)}")
    nodes = []
    for item in items:
        if item.startswith("["):  # [IPv6]:port
            host, close, tail = item[1:].partition("]")
            if not close or (tail and not tail.startswith(":")):
                raise bad(f"node {item!r}: expected [address]:port")
            port_text = tail[1:]
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise bad(f"node {item!r}: no host (expected host:port[,host:port...])")
        if port_text == "" and item.endswith(":"):
            raise bad(f"node {item!r}: empty port")
        port = DEFAULT_PORT
        if port_text:
            if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
                    and 0 < int(port_text) <= 65535):
                raise bad(f"node {item!r}: the port must be 1..65535")
            port = int(port_text)
        nodes.append(ClusterNode(host, port))
    return nodes, username, password, scheme.lower() == "rediss+cluster"


def client_for_url(url: str, source: str, bad) -> RedisCluster:
    """A RedisCluster for ``redis+cluster://host:port[,host:port...]`` (the nodes it starts
    from; it learns the others from the cluster). ``bad(reason)`` makes the caller's
    malformed-URL error. The cluster is asked for its slots here: redis.ConnectionError
    naming ``source`` when no node answers or the cluster is not usable."""
    nodes, username, password, tls = _nodes(url, bad)
    kwargs = {"socket_connect_timeout": 5.0}
    if username is not None:
        kwargs["username"] = username
    if password is not None:
        kwargs["password"] = password
    if tls:
        kwargs["ssl"] = True
    try:
        return RedisCluster(startup_nodes=nodes, **kwargs)
    except (RedisClusterException, redis.RedisError, OSError) as exc:
        shown = ",".join(f"{n.host}:{n.port}" for n in nodes)
        raise redis.ConnectionError(f"{source} cluster {shown}: {exc}") from exc
