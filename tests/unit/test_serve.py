"""The app server's cache of static answers (immunesim/viz/serve.py)."""

from __future__ import annotations

import asyncio
import gzip

from immunesim.viz.serve import StaticCache


class Files:
    """An ASGI app that serves a file in two chunks, gzipped when the request accepts it,
    ``status`` for every path, and counts the requests it answered."""

    def __init__(self, status: int = 200):
        self.status = status
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        headers = dict(scope["headers"])
        body = f"file {scope['path']} {scope['query_string'].decode()}".encode() * 50
        out = [(b"content-type", b"text/javascript")]
        if b"gzip" in headers.get(b"accept-encoding", b""):
            body = gzip.compress(body)
            out.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": self.status, "headers": out})
        half = len(body) // 2
        await send({"type": "http.response.body", "body": body[:half], "more_body": True})
        await send({"type": "http.response.body", "body": body[half:]})


def get(app, path: str, query: bytes = b"", method: str = "GET", **headers: str) -> list[dict]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def body(messages: list[dict]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages[1:])


def test_a_static_file_is_answered_from_memory_the_second_time_as_it_was_sent():
    files = Files()
    cache = StaticCache(files)
    path = "/_solara/cdn/echarts@5.4.0/dist/echarts.common.min.js"
    first = get(cache, path, accept_encoding="gzip, deflate")
    again = get(cache, path, accept_encoding="gzip, deflate")
    assert files.calls == 1
    assert again == first  # status, headers and body chunks
    assert gzip.decompress(body(again)).startswith(f"file {path}".encode())
    assert cache.kept_bytes == len(body(first))


def test_compressed_and_plain_answers_and_queries_are_kept_apart():
    files = Files()
    cache = StaticCache(files)
    path = "/static/main-vuetify.js"
    zipped = get(cache, path, accept_encoding="gzip")
    plain = get(cache, path)
    other = get(cache, path, query=b"v=2")
    assert files.calls == 3
    assert (b"content-encoding", b"gzip") in zipped[0]["headers"]
    assert (b"content-encoding", b"gzip") not in plain[0]["headers"]
    assert body(plain).startswith(f"file {path} ".encode())
    assert body(other).startswith(f"file {path} v=2".encode())
    # each from memory now
    assert get(cache, path, accept_encoding="gzip") == zipped
    assert get(cache, path) == plain
    assert get(cache, path, query=b"v=2") == other
    assert files.calls == 3


def test_pages_messages_failures_and_conditional_requests_go_to_the_app():
    files = Files()
    cache = StaticCache(files)
    get(cache, "/")  # the page itself: made for each visit
    get(cache, "/")
    get(cache, "/static/x.js", method="HEAD")
    get(cache, "/static/x.js", method="HEAD")
    get(cache, "/static/x.js", if_none_match='"abc"')
    get(cache, "/static/x.js", range="bytes=0-10")
    assert files.calls == 6
    assert cache.kept_bytes == 0
    missing = StaticCache(Files(status=404))
    get(missing, "/static/none.js")
    get(missing, "/static/none.js")
    assert missing.app.calls == 2  # a failure is asked again: the file may come


def test_the_cache_keeps_no_more_than_its_bound():
    files = Files()
    size = len(body(get(files, "/static/a.js")))
    cache = StaticCache(files, max_bytes=size + 10)
    get(cache, "/static/a.js")
    get(cache, "/static/b.js")  # would pass the bound: answered, not kept
    get(cache, "/static/a.js")
    get(cache, "/static/b.js")
    assert files.calls == 1 + 3  # a once (kept), b twice
    assert cache.kept_bytes == size
