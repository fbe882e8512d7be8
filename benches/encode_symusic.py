"""symusic's parse-only speed over a folder of MIDI files (the peer of
vgmake's `bench_encode`): every file read into memory first, then each
parsed with `symusic.Score.from_midi` (no tokenizing) ROUNDS times on one
thread, the same work as bench_encode's timed part. Prints files/s.

    python3 benches/encode_symusic.py DIR [ROUNDS]

Needs `pip install symusic`; exits with status 3 when it is absent.
"""
import os
import sys
import time

try:
    import symusic
except ImportError:
    print("symusic is not installed (pip install symusic)", file=sys.stderr)
    sys.exit(3)

root = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
suffixes = (".mid", ".midi", ".kar", ".rmi")
paths = sorted(
    os.path.join(d, f)
    for d, _, files in os.walk(root)
    for f in files
    if f.lower().endswith(suffixes)
)
datas = [open(p, "rb").read() for p in paths]
start = time.perf_counter()
for _ in range(rounds):
    for data in datas:
        symusic.Score.from_midi(data)
elapsed = time.perf_counter() - start
print(f"{len(datas) * rounds / elapsed:.0f}")
