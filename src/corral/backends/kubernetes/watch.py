"""Watches: what the cluster holds, kept current by the API server's watch streams.

One :class:`Watcher` thread per kind lists the objects once (remembering the list's
``resourceVersion``), then watches from there; each event moves the version on
(bookmarks too). When the server answers 410 Gone (the version is too old: the watch
was away too long), it lists again and the :class:`ObjectCache` is replaced by the
list, so objects deleted meanwhile disappear and none is counted twice. A failing
connection (API server down, 5xx) is reported through ``on_error`` and retried with a
growing pause; the first success reports recovery and lists again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from corral.backends.kubernetes.labels import component_of

log = logging.getLogger("corral.backends.kubernetes")

Key = tuple[str, str]  # (namespace, name)


def key_of(obj: Any) -> Key:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    if isinstance(meta, dict):
        return meta.get("namespace") or "", meta.get("name") or ""
    return meta.namespace or "", meta.name or ""


def labels_of(obj: Any) -> dict[str, str]:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    found = meta.get("labels") if isinstance(meta, dict) else meta.labels
    return dict(found or {})


class ObjectCache:
    """The objects of one kind, by (namespace, name). Thread-safe."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._objects: dict[Key, Any] = {}
        self._by_component: dict[int, set[Key]] = {}  # so a component's objects cost no scan
        self._lock = threading.Lock()
        self.synced = threading.Event()  # set after the first list

    def _index(self, key: Key, obj: Any, add: bool) -> None:
        cid = component_of(labels_of(obj))
        if cid is None:
            return
        keys = self._by_component.setdefault(cid, set())
        if add:
            keys.add(key)
        else:
            keys.discard(key)
            if not keys:
                del self._by_component[cid]

    def of_component(self, component_id: int) -> list[Any]:
        with self._lock:
            return [self._objects[k] for k in self._by_component.get(component_id, ())]

    def components(self) -> set[int]:
        with self._lock:
            return set(self._by_component)

    def replace(self, items: Iterable[Any]) -> list[Any]:
        """A fresh list: the cache becomes exactly it. Returns the objects that changed
        (appeared, differ, or disappeared: those as they were last seen)."""
        fresh = {key_of(obj): obj for obj in items}
        with self._lock:
            old = self._objects
            self._objects = fresh
            self._by_component = {}
            for key, obj in fresh.items():
                self._index(key, obj, True)
        self.synced.set()
        changed = [old[k] for k in old.keys() - fresh.keys()]
        changed += [obj for k, obj in fresh.items() if k not in old or _version(obj) != _version(old[k])]
        return changed

    def apply(self, event_type: str, obj: Any) -> Any:
        key = key_of(obj)
        with self._lock:
            previous = self._objects.pop(key, None)
            if previous is not None:
                self._index(key, previous, False)
            if event_type != "DELETED":
                self._objects[key] = obj
                self._index(key, obj, True)
        return obj

    def get(self, key: Key) -> Any:
        with self._lock:
            return self._objects.get(key)

    def items(self) -> list[Any]:
        with self._lock:
            return list(self._objects.values())


def _version(obj: Any) -> str | None:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    return meta.get("resourceVersion") if isinstance(meta, dict) else meta.resource_version


def _list_version(answer: Any) -> str:
    meta = answer["metadata"] if isinstance(answer, dict) else answer.metadata
    return (meta.get("resourceVersion") if isinstance(meta, dict) else meta.resource_version) or ""


def _items(answer: Any) -> list[Any]:
    return list(answer["items"] if isinstance(answer, dict) else answer.items or [])


class Watcher(threading.Thread):
    """Lists, then watches one kind into ``cache``; calls ``on_change(objects)`` after
    every change (the objects that changed, deleted ones as last seen), ``on_error(exc)``
    when the API server cannot be reached and ``on_ok()`` once it answers again."""

    def __init__(self, cache: ObjectCache, list_fn: Callable[..., Any], *,
                 on_change: Callable[[list[Any]], None], on_error: Callable[[BaseException], None],
                 on_ok: Callable[[], None], label_selector: str | None = None, timeout_s: int = 240,
                 **list_kwargs: Any) -> None:
        super().__init__(name=f"kube-watch-{cache.kind}", daemon=True)
        self.cache, self.list_fn = cache, list_fn
        self.on_change, self.on_error, self.on_ok = on_change, on_error, on_ok
        self.kwargs = dict(list_kwargs)
        if label_selector:
            self.kwargs["label_selector"] = label_selector
        self.timeout_s = timeout_s
        self.stopping = threading.Event()
        self.relists = 0  # how many times it listed (first list and every 410 Gone)
        self._watch: Any = None

    def stop(self) -> None:
        self.stopping.set()
        if self._watch is not None:
            self._watch.stop()

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        version: str | None = None
        pause = 0.5
        while not self.stopping.is_set():
            try:
                if version is None:
                    answer = self.list_fn(**self.kwargs)
                    version = _list_version(answer)
                    self.relists += 1
                    changed = self.cache.replace(_items(answer))
                    self.on_ok()
                    self.on_change(changed)
                self._watch = watch.Watch()
                for event in self._watch.stream(self.list_fn, resource_version=version, timeout_seconds=self.timeout_s,
                                                allow_watch_bookmarks=True, **self.kwargs):
                    obj = event["object"]
                    version = _version(obj) or version
                    if event["type"] == "BOOKMARK":
                        continue
                    self.on_change([self.cache.apply(event["type"], obj)])
                    self.on_ok()  # it answers (again)
                    if self.stopping.is_set():
                        break
                pause = 0.5
            except ApiException as exc:
                if exc.status == 410:  # Gone: our version is too old; list again
                    log.info("watch of %s expired (410 Gone): listing again", self.cache.kind)
                    version = None
                    continue
                if exc.status is not None and exc.status < 500 and exc.status not in (429,):
                    log.warning("watch of %s refused: %s %s", self.cache.kind, exc.status, exc.reason)
                self.on_error(exc)
                version = None
                self.stopping.wait(pause)
                pause = min(pause * 2, 15.0)
            except Exception as exc:  # noqa: BLE001 - connection errors of every kind (urllib3, OSError)
                if self.stopping.is_set():
                    break
                self.on_error(exc)
                version = None
                self.stopping.wait(pause)
                pause = min(pause * 2, 15.0)
