#!/usr/bin/env python3
"""How soon `audiodiff studio MODEL` answers, and one clip from its page's API against the same clip from
`audiodiff generate` as a process (what a user would otherwise type). Needs the studio extra.

Starts the studio on a free local port, times until its page answers, asks its /generate endpoint for one clip
of LABEL (the model's own sampler, steps and guidance) ROUNDS times with seeds 0.., stops it, then runs
`audiodiff generate MODEL --label LABEL -n 1 --seed i` ROUNDS times. Prints the figures and the command.

    python benchmarks/studio_latency.py samples/models/digits --label 7 --rounds 3
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

OWN = "(the model's own)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--label", default="7")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "audiodiff", "studio", args.model, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit("the studio stopped before its page answered")
                time.sleep(0.1)
        up = time.perf_counter() - start
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        page = []
        for seed in range(args.rounds):
            t = time.perf_counter()
            client.predict(args.model, args.label, 1, seed, OWN, 0, -1, 0, False, OWN, api_name="/generate")
            page.append(time.perf_counter() - t)
    finally:
        server.terminate()
        server.wait()
    cli = []
    with tempfile.TemporaryDirectory() as out:
        for seed in range(args.rounds):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "audiodiff", "generate", args.model, "--out", out, "--label",
                            args.label, "-n", "1", "--seed", str(seed), "--force", "--no-progress"], check=True,
                           stdout=subprocess.DEVNULL)
            cli.append(time.perf_counter() - t)
    print(f"page answers {up:.1f} s after the command starts")
    print(f"one clip of {args.label!r} from the page's API: best {min(page):.2f} s ({', '.join(f'{x:.2f}' for x in page)};"
          " the first loads the model)")
    print(f"the same clip from `audiodiff generate` as a process: best {min(cli):.2f} s")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
