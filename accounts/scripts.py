"""The Lua script registry: every ``accounts/lua/<verb>.lua`` loaded once and called by SHA.

Each verb is ``_lib.lua`` followed by the verb's file (Redis scripts cannot share code);
``lua/index/*.lua`` are one-key helpers of the global index keys, without the prelude.
EVALSHA first, on NoScriptError (a restarted or flushed server) SCRIPT LOAD and retry once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from redis.client import Pipeline
from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).with_name("lua")


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
            self.scripts[path.stem] = LuaScript(path.stem, lib + "\n" + path.read_text())
        for path in sorted((lua_dir / "index").glob("*.lua")):
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
        run, and every verb is idempotent on its op id anyway."""
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


_REGISTRY: ScriptRegistry | None = None


def registry() -> ScriptRegistry:
    """The process-wide registry (the files are read once)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = ScriptRegistry()
    return _REGISTRY
