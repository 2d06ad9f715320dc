"""ui.jsapi: what a script in the page can reach through pywebview's js_api, tried the way pywebview does.

pywebview 6 builds `window.pywebview.api` by walking `dir(js_api)` recursively (webview/util.py,
`inject_pywebview.get_functions`), and calls whatever dotted name the page sends through
`getattr(obj, part, None)` for each part (`js_bridge_call.get_nested_attribute`), `_` names included. Both
are mirrored here and run against the object desktop/window.py hands to pywebview.
"""

from __future__ import annotations

import builtins
import inspect
import os
import queue
import sys
import types
from typing import Any

import pytest

import ui.bridge
from sync.model import Folder
from sync.store import Store
from ui.bridge import Bridge
from ui.demo import DemoBridge
from ui.jsapi import expose

API = {
    "start", "status", "folders", "messages", "search", "message", "prefetch", "outbox", "timeline",
    "open_link", "open_attachment", "save_attachment", "draft", "send", "pick_files", "sync_now", "force",
    "pause", "sign_in",
}


def pywebview_functions(obj: object, base: str = "", seen: list[int] | None = None,
                        out: dict[str, Any] | None = None) -> dict[str, Any]:
    """webview/util.py get_functions, line for line: the names the page is given, with their objects."""
    seen = [] if seen is None else seen
    out = {} if out is None else out
    if id(obj) in seen:
        return out
    seen.append(id(obj))
    for name in dir(obj):
        full = f"{base}.{name}" if base else name
        if name.startswith("_"):
            continue
        try:
            attr = getattr(obj, name)
            if not getattr(attr, "_serializable", True):
                continue
            if inspect.ismethod(attr) or inspect.isfunction(attr):
                out[full] = attr
            elif inspect.isclass(attr) or (isinstance(attr, object) and not callable(attr)
                                           and hasattr(attr, "__module__")):
                pywebview_functions(attr, full, seen, out)
        except Exception:
            continue
    return out


def nested(obj: object, dotted: str) -> Any:
    """webview/util.py js_bridge_call.get_nested_attribute: what a page's call named `dotted` runs."""
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


@pytest.fixture
def bridge(tmp_path):
    store = Store.open(tmp_path / "cache.db", os.urandom(32))
    store.upsert_folders([Folder("inbox", "Inbox", well_known="inbox")])
    handed: list[str] = []  # what would go to the system's browser or viewer

    def to_system(target: str) -> None:
        handed.append(target)

    b = Bridge(store, queue.Queue(), me="me@example.org", open_url=to_system, open_path=to_system,
               opened=tmp_path / "opened")
    yield b
    store.close()


def test_the_page_is_given_exactly_the_api(bridge):
    """Tried: pywebview's own walk over the exposed object: the page's function list is the API, each a
    callable that answers like the bridge."""
    found = pywebview_functions(expose(bridge))
    assert set(found) == API
    assert found["folders"]() == bridge.folders()
    assert found["force"]("chaos")["kind"] == "BadArgument"


def test_the_demo_window_is_given_the_api_and_the_demo_panel(tmp_path):
    """Tried: the same walk over the demo window's bridge: the API plus the demo panel's two methods."""
    demo = DemoBridge(None, me="me@example.org", admin_url="http://127.0.0.1:9/_sim")
    assert set(pywebview_functions(expose(demo))) == API | {"demo_state", "demo_outage"}


@pytest.mark.parametrize("dotted", [
    "_open_path", "_open_url", "_save_attachment_to", "_attachment", "_save_with_dialog", "_picked.add",
    "_store.search", "_store.close", "_commands.put", "_view.start", "_private.write", "_attach_window",
    "__init__", "__class__", "__dict__", "__setattr__", "__getattribute__", "__reduce_ex__",
    "start.__self__", "start.__wrapped__", "start.__func__", "start.__globals__.get",
    "start.__builtins__.get", "start.__closure__", "send.__self__._picked.add",
])
def test_a_page_cannot_call_what_is_not_the_api(bridge, dotted):
    """Tried: names a hostile page would send through pywebview's call path (the issue's `_open_path`,
    `_open_url('file://…')`, `_save_attachment_to`, `_picked.add`, and ways around a facade: dunders,
    a method's `__self__`/`__wrapped__`/`__globals__`); none reaches the bridge, its state or a module."""
    api = expose(bridge)
    got = nested(api, dotted)
    assert got is None or not _leaks(got, bridge), f"{dotted} reaches {got!r}"


def test_nothing_but_the_api_is_reachable_by_attribute(bridge):
    """Tried: every chain of attribute names (dir() of each object, dunders included, plus the names
    dir() does not list) from the exposed object, breadth first: no Python function but the API's doors,
    no bound method, no module, no bridge, store, view, queue or picked-file set, no real builtins."""
    api = expose(bridge)
    doors = set(map(id, pywebview_functions(api).values()))
    reached = _reach(api, depth=5)
    assert len(reached) > 100  # the walk really went somewhere
    bad = [(path, obj) for path, obj in reached if _leaks(obj, bridge)]
    assert not bad, bad[:5]
    functions = {id(obj) for _, obj in reached if isinstance(obj, types.FunctionType)}
    assert functions == doors


def test_the_raw_bridge_would_leak(bridge):
    """Control: the same walk from the Bridge itself (what pywebview was given before) reaches its store,
    so the checks above can fail."""
    assert any(_leaks(obj, bridge) for _, obj in _reach(bridge, depth=2))
    assert nested(bridge, "_open_path") is not None


EXTRA = ("__self__", "__func__", "__wrapped__", "__globals__", "__builtins__", "__closure__", "cell_contents",
         "__dict__", "__class__", "__objclass__", "__module__", "_bridge", "_store", "bridge", "store")
LEAVES = (str, bytes, int, float, bool, type(None), types.BuiltinFunctionType, types.MethodWrapperType,
          types.WrapperDescriptorType, types.MethodDescriptorType, types.ClassMethodDescriptorType,
          types.GetSetDescriptorType, types.MemberDescriptorType)


def _reach(root: object, depth: int) -> list[tuple[str, object]]:
    """Every (path, object) reachable from `root` by getattr chains of at most `depth` names."""
    keep: list[object] = [root]
    seen = {id(root)}
    out: list[tuple[str, object]] = []
    frontier: list[tuple[str, object]] = [("", root)]
    for _ in range(depth):
        nxt: list[tuple[str, object]] = []
        for path, obj in frontier:
            try:
                names = set(dir(obj)) | set(EXTRA)
            except Exception:
                names = set(EXTRA)
            if isinstance(obj, LEAVES):
                names = {"__self__", "__objclass__"}  # a builtin's attributes are fixed: only its owner
            for name in sorted(names):
                try:
                    value = getattr(obj, name, None)
                except Exception:
                    continue
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                keep.append(value)  # keep it alive so its id is not reused
                out.append((f"{path}.{name}", value))
                nxt.append((f"{path}.{name}", value))
        frontier = nxt
    return out


def _leaks(obj: object, bridge: Bridge) -> bool:
    """Whether reaching `obj` would hand a page something beyond the API."""
    private = [bridge, vars(bridge), bridge._store, bridge._view, bridge._commands, bridge._picked, Bridge,
               DemoBridge, ui.bridge.__dict__, builtins.__dict__, sys.modules]
    if any(obj is p for p in private):
        return True
    owner = getattr(obj, "__self__", None)  # a builtin method or method-wrapper: bound to what?
    if isinstance(obj, LEAVES) and owner is not None and owner is not obj and _leaks(owner, bridge):
        return True
    if isinstance(obj, (types.ModuleType, types.MethodType)):
        return True
    # a function with real globals is a helper of some module, not a door
    return isinstance(obj, types.FunctionType) and len(obj.__globals__) > 1
