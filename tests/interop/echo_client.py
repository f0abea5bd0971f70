"""A Python `websockets` client for tests/ws_interop.rs: sends the messages
of the interop script to the server at argv[1], checks each echo, closes
with 1000 and prints `ok`."""
import sys

from websockets.sync.client import connect


def messages():
    yield "hello"
    yield "κόσμε €" * 100
    yield ""
    for n in (0, 125, 126, 65536, 200000):
        yield bytes(i % 251 for i in range(n))


def main():
    with connect(sys.argv[1], compression="deflate", max_size=2**22, open_timeout=10) as ws:
        for msg in messages():
            ws.send(msg)
            echo = ws.recv(timeout=10)
            if echo != msg:
                print(f"echo differs for a {type(msg).__name__} of {len(msg)}", flush=True)
                sys.exit(1)
        ws.ping(b"interop").wait(timeout=10)
        ws.close(1000, "done")
    print("ok", flush=True)


main()
