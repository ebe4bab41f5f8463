"""``python -m bench.profile [--records N]``: profile the gateway process while it serves the
publish load and then the delivery load, and print where its CPU goes.

py-spy samples every thread of the running gateway subprocess (``--gil``: only the thread
holding the GIL, i.e. Python CPU time). pyinstrument would only see the thread it starts in,
and the gateway does its work in AnyIO worker threads. Raw stacks go to bench/results/.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench import bench_delivery, bench_publish, world
from bench.env import Bench, system

OURS = ("exchange/", "gateway/", "audit/", "schemas/", "consent/")


def _pyspy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    return exe


def record(pid: int, out: Path, load: Callable[[], object]) -> None:
    """Sample ``pid`` while ``load`` runs; py-spy writes its raw stacks on SIGINT."""
    args = ["record", "-p", str(pid), "--gil", "--nonblocking", "-r", "200", "-f", "raw"]
    spy = subprocess.Popen(
        [_pyspy(), *args, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        load()
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def summarize(raw: Path, top: int = 25) -> str:
    """Self and inclusive shares per function; inclusive only for the project's own code and
    the libraries it calls directly, so the table names something one can change."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        # "func (path:line)" -> "func (path)": one row per function, not per line.
        frames = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") else f for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples with the GIL held", "", "self time:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive (project code):"]
    mine = [(f, n) for f, n in incl.most_common() if any(p in f for p in OURS)]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in mine[:top]]
    return "\n".join(lines) + "\n"


def profile(b: Bench, n: int, outdir: Path) -> dict[str, str]:
    t = world.tenant(b.admin, b.gateway.url)
    token = t.publisher.token()
    bodies = [
        world.publish_body([world.record(i) for i in range(s, min(n, s + 500))])
        for s in range(0, n, 500)
    ]
    bench_publish.publish_http(b.gateway.url, token, t.topic, bodies[:1], 1)  # warm up
    pub = outdir / "profile-publish.raw"
    record(
        b.gateway.pid,
        pub,
        lambda: bench_publish.publish_http(b.gateway.url, token, t.topic, bodies[1:], 4),
    )
    sub = t.subscriber.subscribe(t.topic, start="earliest")
    dlv = outdir / "profile-delivery.raw"
    pulled = n  # the warm-up batch plus the profiled ones
    record(
        b.gateway.pid,
        dlv,
        lambda: bench_delivery.pull_all(b.gateway.url, t.subscriber.token(), sub, pulled),
    )
    return {"publish": summarize(pub), "delivery": summarize(dlv)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile")
    ap.add_argument("--records", type=int, default=30_000)
    ap.add_argument("--outdir", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="exchange-profile-") as tmp,
        system(Path(tmp), quick=False) as b,
    ):
        got = profile(b, args.records, args.outdir)
    for name, text in got.items():
        (args.outdir / f"profile-{name}.txt").write_text(text)
        print(f"== {name} ==\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
