"""``memoize``: a function's results kept in a groupcache cache, in the
spirit of ``functools.lru_cache`` (documented on ``memoize``)."""

from __future__ import annotations

import functools
import inspect
import threading
import types
from typing import Any, Callable, Dict, Generic, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from ._errors import ClosedError, LoaderError, NotFoundError
from ._keys import encode_key
from ._loader import LoaderResult
from .cache import Cache, CacheInfo
from .pool import Pool
from .serializers import Serializer

__all__ = ["memoize", "Memoized"]

T = TypeVar("T")

_Call = Tuple[Tuple[Any, ...], Dict[str, Any]]


def _str_key(*args: Any, **kwargs: Any) -> str:
    if len(args) == 1 and not kwargs and isinstance(args[0], str):
        return args[0]
    raise TypeError(
        "a function memoized without key= takes one str argument, its cache "
        "key; give memoize a key= function for other arguments"
    )


class Memoized(Generic[T]):
    """A memoized function (what ``memoize`` returns): call it as the
    function. Hits decode the cached bytes, so each caller gets its own
    copy of the result. An exception the function raises reaches the
    caller whose call ran it; callers that were waiting for that call get
    ``LoaderError``. Nothing is cached on failure."""

    def __init__(
        self,
        func: Callable[..., T],
        cache: Union[Cache, str],
        serializer: Serializer[T],
        key: Optional[Callable[..., str]],
        key_to_args: Optional[Callable[[str], Sequence[Any]]],
        ttl: Optional[float],
        max_bytes: int,
        pool: Optional[Pool],
        many: Optional[Callable[[List[str]], Mapping[str, T]]] = None,
    ) -> None:
        if inspect.iscoroutinefunction(func):
            raise TypeError("memoize does not take coroutine functions (the loader runs on library threads)")
        if not callable(func):
            raise TypeError("memoize decorates a callable, not %s" % type(func).__name__)
        for what in ("encode", "decode"):
            if not callable(getattr(serializer, what, None)):
                raise TypeError("serializer must have an %s method (see groupcache.serializers)" % what)
        self._func = func
        self._serializer = serializer
        self._key: Callable[..., str] = key if key is not None else _str_key
        self._key_to_args = key_to_args
        self._ttl = ttl
        self._tls = threading.local()
        self._lock = threading.Lock()
        if many is not None:
            if not callable(many):
                raise TypeError("many must be callable (keys -> {key: result})")
            if inspect.iscoroutinefunction(many):
                raise TypeError("memoize does not take a coroutine function as many= (it runs on library threads)")
            if not isinstance(cache, str):
                raise TypeError("many= needs a cache memoize makes (pass a name, not a Cache)")
        self._many = many
        if isinstance(cache, Cache):
            if pool is not None:
                raise TypeError("pool= is for a cache memoize makes; this Cache has its own")
            if cache.loader is not None:
                raise TypeError(
                    "memoize uses a Cache without a loader (it stores results with set); "
                    "give a name instead to let memoize make one"
                )
            self._owned = False
            self._cache = cache
        elif isinstance(cache, str):
            self._owned = True
            self._cache = self._new_cache(cache, max_bytes, pool)
        else:
            raise TypeError("memoize takes a Cache or a cache name, not %s" % type(cache).__name__)
        functools.update_wrapper(self, func)

    def _new_cache(self, name: str, max_bytes: int, pool: Optional[Pool]) -> Cache:
        many = None if self._many is None else self._load_many
        return Cache(name, max_bytes=max_bytes, loader=self._load, pool=pool, loader_many=many)

    # ---- calls -----------------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> Dict[str, T]:
        """``{key: result}`` for many cache keys at once (each decoded, the
        caller's own copy), through ``Cache.get_many``: the hits in one
        pass, the misses of each owner node in one trip, loaded there by
        ``many=`` in one call per chunk (or by the function, key by key,
        concurrently, with ``key_to_args=`` or the default key). A key
        ``many`` leaves out is left out here too. Errors as in
        ``Cache.get_many`` (``BatchError`` after the whole batch)."""
        if not isinstance(keys, list):
            keys = list(keys)
        cache = self._cache
        try:
            got = cache.get_many(keys)
        except ClosedError:
            if self._cache is cache or self._cache.closed:
                raise
            got = self._cache.get_many(keys)  # cache_clear() replaced it meanwhile
        decode = self._serializer.decode
        return {k: decode(v) for k, v in got.items()}


    def __call__(self, *args: Any, **kwargs: Any) -> T:
        k = self._key(*args, **kwargs)
        kb = encode_key(k, "key= must return a str")
        cache = self._cache
        data = cache._peek(kb)
        if data:
            return self._serializer.decode(data)
        if not self._owned:
            return self._aside(cache, k, kb, args, kwargs)
        try:
            data = self._run(cache, k, kb, args, kwargs)
        except ClosedError:
            if self._cache is cache or self._cache.closed:
                raise
            # cache_clear() replaced the cache during the call: once more.
            data = self._run(self._cache, k, kb, args, kwargs)
        return self._serializer.decode(data)

    def _run(self, cache: Cache, k: str, kb: bytes, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> bytes:
        """A miss: leaves the arguments where the loader (on this thread,
        if this call leads the load) finds them, then loads."""
        calls: Optional[Dict[str, _Call]] = getattr(self._tls, "calls", None)
        if calls is None:
            calls = self._tls.calls = {}
        outer = calls.get(k)
        calls[k] = (args, kwargs)
        raised: Optional[BaseException] = None
        try:
            return cache._load(kb)
        except LoaderError:
            failed = getattr(self._tls, "failed", None)
            self._tls.failed = None
            if failed is None or failed[0] != k:
                raise
            raised = failed[1]
        finally:
            if outer is None:
                calls.pop(k, None)
            else:
                calls[k] = outer
        # Outside the except block: the function's own exception, without
        # the LoaderError as its context.
        assert raised is not None
        raise raised

    def _load(self, k: str) -> LoaderResult:
        """The cache's loader: runs the function for ``k``."""
        calls: Optional[Dict[str, _Call]] = getattr(self._tls, "calls", None)
        call = calls.get(k) if calls else None
        if call is not None:
            try:
                data = self._serializer.encode(self._func(*call[0], **call[1]))
            except Exception as exc:
                self._tls.failed = (k, exc)
                raise
        else:
            # A peer's request (or a get on .cache): only the key is known.
            if self._key_to_args is not None:
                value = self._func(*self._key_to_args(k))
            elif self._key is _str_key:
                value = self._func(k)
            else:
                raise LookupError(
                    "%s: key %r was requested without a call (by a peer?) and memoize "
                    "has no key_to_args= to rebuild the arguments" % (getattr(self, "__qualname__", "?"), k)
                )
            data = self._serializer.encode(value)
        return data if self._ttl is None else (data, self._ttl)

    def _load_many(self, keys: List[str]) -> Dict[str, LoaderResult]:
        """The cache's loader_many: runs ``many`` for the keys."""
        assert self._many is not None
        results = self._many(keys)
        if not isinstance(results, Mapping):
            raise TypeError("many= must return a mapping {key: result}, not %s" % type(results).__name__)
        out: Dict[str, LoaderResult] = {}
        for k, value in results.items():
            data = self._serializer.encode(value)
            out[k] = data if self._ttl is None else (data, self._ttl)
        return out

    def _aside(self, cache: Cache, k: str, kb: bytes, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> T:
        """Cache-aside on a Cache without a loader: get, else call and set."""
        try:
            return self._serializer.decode(cache._load(kb))
        except NotFoundError:
            pass
        value = self._func(*args, **kwargs)
        cache.set(k, self._serializer.encode(value), ttl=self._ttl)
        return value

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        """As a method: binds like a function (``key=`` then receives the
        instance as its first argument)."""
        if obj is None:
            return self
        return types.MethodType(self, obj)

    # ---- the lru_cache helpers -------------------------------------------

    @property
    def cache(self) -> Cache:
        """The cache the results are kept in."""
        return self._cache

    def cache_info(self) -> CacheInfo:
        """``hits, misses, maxsize, currsize`` of the cache, as
        ``functools.lru_cache``'s (sizes in bytes; see ``CacheInfo``)."""
        return self._cache.cache_info()

    def cache_remove(self, *args: Any, **kwargs: Any) -> None:
        """Drops the result for these arguments everywhere (this node, the
        key's owner, the other peers): the next call runs the function."""
        self._cache.remove(self._key(*args, **kwargs))

    def cache_clear(self) -> None:
        """Drops every result this node holds and resets the counters, as
        ``lru_cache``'s ``cache_clear()``: the cache is replaced by a new,
        empty one of the same name. Other nodes keep their copies (use
        ``cache_remove`` to drop one key everywhere). Only for a cache
        ``memoize`` made (given a name); ``TypeError`` otherwise."""
        if not self._owned:
            raise TypeError("cache_clear() needs a cache memoize made (pass a name, not a Cache)")
        with self._lock:
            old = self._cache
            if old.closed:
                raise ClosedError("the cache %r is closed" % old.name, None)
            pool = old.pool
            old.close()  # frees the name, in the pool too
            self._cache = self._new_cache(old.name, old.max_bytes, pool)

    def close(self) -> None:
        """Closes the cache (if ``memoize`` made it); later calls raise
        ``ClosedError``."""
        if self._owned:
            self._cache.close()

    def __repr__(self) -> str:
        return "<groupcache.memoize %s of %r>" % (getattr(self, "__qualname__", "?"), self._cache)


def memoize(
    cache: Union[Cache, str],
    *,
    serializer: Serializer[T],
    key: Optional[Callable[..., str]] = None,
    key_to_args: Optional[Callable[[str], Sequence[Any]]] = None,
    ttl: Optional[float] = None,
    max_bytes: int = 64 << 20,
    pool: Optional[Pool] = None,
    many: Optional[Callable[[List[str]], Mapping[str, T]]] = None,
) -> Callable[[Callable[..., T]], Memoized[T]]:
    """Decorator: keeps a function's results in a groupcache cache, in the
    spirit of ``functools.lru_cache``::

        from groupcache import memoize, serializers

        @memoize("users", serializer=serializers.JSON, pool=pool)
        def load_user(user_id: str) -> dict:
            return db.fetch_user(user_id)

        load_user("42")               # runs once in the cluster, then from memory
        load_user.cache_info()        # CacheInfo(hits=..., misses=..., maxsize=..., currsize=...)
        load_user.cache_remove("42")  # drops it everywhere: the next call runs it again
        load_user.cache_clear()       # drops this node's copies, resets the counters

    ``cache``: a name, or a ``Cache`` without a loader. Given a name,
    memoize makes a ``Cache`` of ``max_bytes`` (in ``pool``'s cluster if
    given) whose loader is the function: a missing key is loaded once at a
    time (concurrent callers of one key share one call), by the node that
    owns it. Given a ``Cache``, memoize uses it cache-aside: look up, and on
    a miss call the function and ``set`` the result (concurrent callers
    each call it).

    ``serializer``: turns results into bytes and back. Required: there is
    no default, because it decides what a peer's bytes can make this
    process do. ``serializers.Bytes``, ``Str`` or ``JSON``; ``Pickle`` only
    where every machine that can reach the peers' port is trusted (see
    ``groupcache.serializers``).

    ``key``: ``key(*args, **kwargs) -> str``, the cache key of a call; it
    must mean the same on every node. By default the function takes one
    ``str`` argument, which is the key.

    ``key_to_args``: ``key_to_args(key) -> args`` rebuilds a call's
    positional arguments from its key. The key's owner may be asked by a
    peer, which sends only the key, so with ``key=`` in a cluster give this
    too; without it, the owner's load fails and the asking node loads the
    key itself (correct, but not shared, and both nodes log a warning). Not
    needed with the default key.

    ``ttl``: seconds each result stays valid (None: until evicted).

    ``many``: ``many(keys: list[str]) -> {key: result}``, the function for
    many cache keys at once (one ``SELECT ... WHERE id IN (...)`` instead
    of one query a key): the cache's ``loader_many``. ``f.get_many(keys)``
    then loads each owner node's misses with one call of it (per chunk of
    ``batch_chunk_keys``); keys it leaves out do not exist. Calls of the
    function itself still run it for their one key. Only for a cache
    memoize makes (given a name)::

        @memoize("users", serializer=serializers.JSON, pool=pool,
                 many=lambda ids: db.fetch_users(ids))  # {id: user}
        def load_user(user_id: str) -> dict: ...

        load_user.get_many(["1", "2", "3"])  # {"1": {...}, "2": {...}, ...}
    """

    def decorate(func: Callable[..., T]) -> Memoized[T]:
        return Memoized(func, cache, serializer, key, key_to_args, ttl, max_bytes, pool, many)

    return decorate
