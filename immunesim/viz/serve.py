"""The app's web server: Solara's (``solara run``), with the page's static files compressed
once per server instead of once per page.

Solara's server gzips every response at level 9 as it sends it. The page a browser opens
needs some 3.6 MB of static files (Solara's scripts and styles, fonts, ECharts), so each
page cost the server about half a second of CPU (py-spy), in the thread that also carries
every open tab's messages: a class opening the app at once queued behind it.
:class:`StaticCache` keeps the compressed answers to those requests in memory and sends
them again as they were.

``immunesim app`` runs ``python -m immunesim.viz.serve run immunesim.viz.app ...``, which
takes the arguments of ``solara run``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: URL paths of the files that do not change while a server runs: Solara's scripts, styles,
#: fonts and ECharts (``/_solara/cdn/``), its own assets and the widgets' scripts.
STATIC_PREFIXES = ("/_solara/cdn/", "/static/", "/jupyter/nbextensions/")
#: The most bytes of answers kept (the page's files take about 1.5 MB compressed).
MAX_BYTES = 64 * 2**20
#: Request headers that ask for something other than the whole file: passed on.
_CONDITIONAL = (b"if-none-match", b"if-modified-since", b"range")


class StaticCache:
    """ASGI middleware: answers GET requests under ``prefixes`` from memory after the first
    time, with the status, headers and body the wrapped app sent then (compressed or not,
    as the request accepted). Only whole answers (status 200) are kept, up to ``max_bytes``
    of bodies; conditional and range requests, other methods and other paths go to the app.

    Args:
        app: the ASGI app (the server's, with its compression inside).
        prefixes: URL paths of files that do not change while the server runs.
        max_bytes: the most bytes of bodies kept.
    """

    def __init__(
        self,
        app: ASGIApp,
        prefixes: tuple[str, ...] = STATIC_PREFIXES,
        max_bytes: int = MAX_BYTES,
    ):
        self.app = app
        self.prefixes = prefixes
        self.max_bytes = max_bytes
        self.kept_bytes = 0
        self._answers: dict[tuple[str, bytes, bool], list[Message]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(self.prefixes)
        ):
            await self.app(scope, receive, send)
            return
        headers = dict((k.lower(), v) for k, v in scope.get("headers", []))
        if any(h in headers for h in _CONDITIONAL):
            await self.app(scope, receive, send)
            return
        key = (
            scope["path"],
            scope.get("query_string", b""),
            b"gzip" in headers.get(b"accept-encoding", b""),
        )
        answer = self._answers.get(key)
        if answer is not None:
            for message in answer:
                await send(dict(message))
            return
        sent: list[Message] = []

        async def keep(message: Message) -> None:
            sent.append(dict(message))
            await send(message)

        await self.app(scope, receive, keep)
        if not sent or sent[0].get("type") != "http.response.start" or sent[0].get("status") != 200:
            return
        if any(m.get("type") != "http.response.body" for m in sent[1:]):
            return  # an answer in another form (e.g. a file sent by path): not kept
        size = sum(len(m.get("body", b"")) for m in sent[1:])
        if self.kept_bytes + size <= self.max_bytes and key not in self._answers:
            self._answers[key] = sent
            self.kept_bytes += size


def main(argv: list[str]) -> None:
    """``solara run`` with ``argv``, its server's app behind :class:`StaticCache`."""
    import uvicorn
    from solara.__main__ import main as solara_main

    load = uvicorn.Config.load

    def load_behind_cache(self: uvicorn.Config) -> None:
        load(self)
        self.loaded_app = StaticCache(self.loaded_app)

    uvicorn.Config.load = load_behind_cache  # type: ignore[method-assign]
    sys.argv = ["solara", *argv]
    solara_main()


if __name__ == "__main__":
    main(sys.argv[1:])
