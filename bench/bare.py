"""The reference server: Starlette on Uvicorn answering every path with fixed bytes.

Nimbus's gateway runs on the same stack; whatever this reaches is the ceiling that
a gateway with a fresh sandbox per request is compared to.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = os.environ.get("BENCH_BODY", "hello, bench\n").encode()


async def endpoint(request: Request) -> Response:
    return Response(BODY, media_type="text/plain; charset=utf-8")


app = Starlette(routes=[Route("/{path:path}", endpoint)])

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
