#!/usr/bin/env python3
"""Fetch several URLs concurrently through SchedulerService.FetchUrls.

The example starts its own HTTP server on the loopback (``http.server`` in a thread, port 0) and
asks spindled to GET 8 pages that each take 0.3 s to answer, plus one missing page: spindled's
reactor runs the transfers at once (no thread per request), so the whole batch takes about as long
as the slowest page, not the sum. Results stream back in completion order; a 404 is a normal
result, a refused connection a result with ``error``.

(``asyncio.gather`` over aiohttp, or a ThreadPoolExecutor over urllib, do this for one program;
here the server does it for any client.)

Last line: ``fetch: 9 URLs, 8 x 200, 1 x 404, 0 errors, bodies match``.
"""

from __future__ import annotations

import http.server
import threading
import time

from _common import arguments, spindle

PAGES = 8
DELAY_S = 0.3


class Handler(http.server.BaseHTTPRequestHandler):
    """/page/N answers "page N" after DELAY_S; anything else is a 404."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/page/"):
            time.sleep(DELAY_S)  # A slow backend.
            body = f"page {self.path.rsplit('/', 1)[1]}".encode()
            self.send_response(200)
        else:
            body = b"not here"
            self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 64  # listen() backlog: room for every concurrent connection.
    daemon_threads = True


def main() -> int:
    args = arguments(__doc__.splitlines()[0]).parse_args()
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = [f"{base}/page/{n}" for n in range(PAGES)] + [f"{base}/missing"]
    statuses: dict[int, int] = {}
    errors = 0
    bodies_match = True
    try:
        with spindle.Client(args.address) as client:
            started = time.monotonic()
            for result in client.fetch_urls(urls, max_concurrency=PAGES + 1, timeout=30):
                print(f"{result.url} -> {result.status or result.error} in {result.elapsed_ms} ms")
                if result.error:
                    errors += 1
                    continue
                statuses[result.status] = statuses.get(result.status, 0) + 1
                if result.status == 200:
                    bodies_match &= result.body == f"page {result.url.rsplit('/', 1)[1]}".encode()
            elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    print(f"{len(urls)} URLs in {elapsed:.2f} s; one after the other would take {PAGES * DELAY_S:.1f} s")
    print(f"fetch: {len(urls)} URLs, {statuses.get(200, 0)} x 200, {statuses.get(404, 0)} x 404, "
          f"{errors} errors, bodies {'match' if bodies_match else 'DIFFER'}")
    return 0 if statuses.get(200) == PAGES and statuses.get(404) == 1 and bodies_match else 1


if __name__ == "__main__":
    raise SystemExit(main())
