"""A Python `websockets` echo server for tests/ws_interop.rs: listens on a
free loopback port, prints `port <n>`, echoes every message, and exits when
its standard input closes."""
import sys
import threading

from websockets.sync.server import serve


def echo(ws):
    for msg in ws:
        ws.send(msg)


with serve(echo, "127.0.0.1", 0, compression="deflate", max_size=2**22) as server:
    print(f"port {server.socket.getsockname()[1]}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
