"""``ire serve`` on uvloop, for the experiment behind the server-side recommendation.

The server's own event loop is ``asyncio.run`` in supervisor/cli/serve.py; this sets
uvloop's policy first and then runs ``python -m supervisor`` unchanged, so that
``bench.all --ire-uvloop`` measures what that one-line change would give.

    python -m bench._uvloop_serve serve --listen 127.0.0.1:0
"""

from __future__ import annotations

import asyncio
import runpy
import sys

import uvloop

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.argv[0] = "supervisor"
    runpy.run_module("supervisor", run_name="__main__", alter_sys=True)
