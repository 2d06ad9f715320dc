"""What the page may call: `expose(bridge)`, the object given to pywebview as js_api.

pywebview lists `dir(js_api)` recursively (skipping `_` names) to build `window.pywebview.api`, but it
resolves the name a page sends with plain `getattr`, dotted and underscores included, so anything
reachable from js_api by attribute access can be called from JavaScript. The exposed object therefore
holds nothing: it answers only its API names (every other attribute, dunders too, is "not there"), and
each name is a stand-alone function whose globals and builtins are empty and which reaches its Bridge
method only through a closure cell (a cell cannot be reached by attribute access). The API is the Bridge's
methods marked with ui.bridge's `_api`.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, NoReturn

API_MARK = "_lifeboat_js"  # set by ui.bridge._api on the page's methods


def api_names(bridge: object) -> list[str]:
    """The names the page may call: the bridge class's public methods marked by `_api`."""
    cls = type(bridge)
    return sorted(n for n in dir(cls) if not n.startswith("_") and getattr(getattr(cls, n), API_MARK, False))


def _door(name: str, method: Callable[..., Any]) -> types.FunctionType:
    """A function that calls `method` and holds nothing else reachable (no globals, no builtins)."""

    def door(*args: Any) -> Any:  # its body uses no global or builtin name: it gets none below
        return method(*args)

    fn = types.FunctionType(door.__code__, {"__builtins__": {}}, name, None, door.__closure__)
    fn.__qualname__ = name
    return fn


def expose(bridge: object) -> object:
    """The js_api object for `bridge`: its API names and nothing else."""
    doors = {name: _door(name, getattr(bridge, name)) for name in api_names(bridge)}

    def get(_self: object, name: str) -> Any:
        try:
            return doors[name]
        except KeyError:
            raise AttributeError(name) from None

    def refuse(_self: object, *_args: Any) -> NoReturn:
        raise AttributeError("the page's API cannot be changed")

    cls = type("PageApi", (), {
        "__slots__": (),
        "__getattribute__": get,
        "__setattr__": refuse,
        "__delattr__": refuse,
        "__dir__": lambda _self: list(doors),
        "__repr__": lambda _self: f"<page API: {len(doors)} methods>",
    })
    return cls()
