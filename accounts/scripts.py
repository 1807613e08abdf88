"""The Lua script registry: every ``accounts/lua/<verb>.lua`` loaded once and called by SHA.

Each verb is ``_lib.lua`` followed by the verb's file (Redis scripts cannot share code);
``lua/index/*.lua`` are one-key helpers of the global index keys and ``lua/read/*.lua``
read-only scripts (accounts/snapshot.py), both without the prelude, as are the verbs named in
``STANDALONE`` (``trim_ledger.lua``: the ledger archive's trim, which takes no op id).
EVALSHA first, on NoScriptError (a restarted or flushed server) SCRIPT LOAD and retry once. On
a Redis Cluster EVALSHA goes to the node of the script's keys and SCRIPT LOAD to every primary,
so a node that lost its scripts is reloaded the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from accounts.cluster import is_cluster_pipeline

LUA_DIR = Path(__file__).with_name("lua")
STANDALONE = frozenset({"trim_ledger"})  # lua/<name>.lua run without _lib.lua


class LuaScript:
    """One verb: its full source, its SHA1, and how to call it."""

    def __init__(self, name: str, source: str):
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def load(self, client) -> None:
        client.script_load(self.source)

    def __call__(self, client, keys: list[str], args: list):
        """Run on a client (returns the reply) or queue on a pipeline (see ``execute``)."""
        if isinstance(client, Pipeline):
            return client.evalsha(self.sha, len(keys), *keys, *args)
        if is_cluster_pipeline(client):  # queued as a plain command (see ``execute``)
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.load(client)
            return client.evalsha(self.sha, len(keys), *keys, *args)


class ScriptRegistry:
    """All verbs by name; ``registry.reserve(client, keys, args)``."""

    def __init__(self, lua_dir: Path = LUA_DIR):
        lib = (lua_dir / "_lib.lua").read_text()
        self.scripts: dict[str, LuaScript] = {}
        for path in sorted(lua_dir.glob("*.lua")):
            if path.name.startswith("_"):
                continue
            prelude = "" if path.stem in STANDALONE else lib + "\n"
            self.scripts[path.stem] = LuaScript(path.stem, prelude + path.read_text())
        for folder in ("index", "read"):
            for path in sorted((lua_dir / folder).glob("*.lua")):
                self.scripts[path.stem] = LuaScript(path.stem, path.read_text())

    def __getattr__(self, name: str) -> LuaScript:
        try:
            return self.__dict__["scripts"][name]
        except KeyError:
            raise AttributeError(name) from None

    def load_all(self, client) -> None:
        """SCRIPT LOAD every verb (at start-up; EVALSHA reloads on its own after that)."""
        for script in self.scripts.values():
            script.load(client)

    def execute(self, pipe: Pipeline, client) -> list:
        """Run a pipeline of queued commands; EVALSHAs refused with NoScriptError (the server
        lost its script cache) are loaded and re-run one by one on ``client``: they did not
        run, and every verb is idempotent on its op id anyway.

        On a Redis Cluster the commands run one after the other, in the order queued: a
        cluster pipeline sends each node its part at the same time, so a ZADD of the expiry
        index (another slot) could run before the script it follows, and the store's index
        rules rely on that order (docs/accounts.md "Reservations and the sweeper")."""
        if is_cluster_pipeline(pipe):
            return self._in_order(pipe, client)
        queued = [(args, opts) for args, opts in pipe.command_stack]
        results = pipe.execute(raise_on_error=False)
        by_sha = {s.sha: s for s in self.scripts.values()}
        out = []
        for (args, _opts), res in zip(queued, results, strict=True):
            if isinstance(res, NoScriptError) and args[0].upper() == "EVALSHA":
                script = by_sha[args[1]]
                nkeys = int(args[2])
                keys, argv = list(args[3 : 3 + nkeys]), list(args[3 + nkeys :])
                res = script(client, keys, argv)
            elif isinstance(res, Exception):
                raise res
            out.append(res)
        return out

    def _in_order(self, pipe, client) -> list:
        """Run a cluster pipeline's queued commands on ``client`` one by one (EVALSHA through
        its script: NoScriptError loads it and retries), the first error raised after all ran,
        as a pipeline does."""
        strategy = getattr(pipe, "_execution_strategy", None)  # redis-py >= 6
        queued = list(strategy.command_queue if strategy is not None else pipe.command_stack)
        pipe.reset()
        by_sha = {s.sha: s for s in self.scripts.values()}
        out, first_error = [], None
        for cmd in queued:
            args = cmd.args
            try:
                if str(args[0]).upper() == "EVALSHA":
                    nkeys = int(args[2])
                    keys, argv = list(args[3 : 3 + nkeys]), list(args[3 + nkeys :])
                    res = by_sha[args[1]](client, keys, argv)
                else:
                    res = client.execute_command(*args, **cmd.options)
            except redis.RedisError as exc:
                res = exc
                first_error = first_error or exc
            out.append(res)
        if first_error is not None:
            raise first_error
        return out


_REGISTRY: ScriptRegistry | None = None


def registry() -> ScriptRegistry:
    """The process-wide registry (the files are read once)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = ScriptRegistry()
    return _REGISTRY
