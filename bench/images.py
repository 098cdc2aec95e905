"""Peak memory of photo uploads: small PNGs of many pixels (6300 x 6300 in ~150 KB; 4000 x 4000, the most
daemon/customers/images.py decodes) sent to the web page's upload.

Each figure comes from a fresh process that runs the daemon's Flask app on a push hub over SQLite, signs in and
posts the PNG to POST /customers/<id>/photo from N greenlets at once (the real upload path: the form, the thread
pool, the checks). It prints the peak resident memory above the same process before the uploads,
and the status codes. The baseline, in the same run: a process that only decodes the PNG with Pillow.

    python bench/images.py [--at-once 1 6] [--edges 6300 4000]

Not a test: prints numbers, never fails.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

def make_png(path: Path, edge: int) -> None:
    """An edge x edge RGBA PNG of one colour: deflate's best ratio, ~150 KB for 6300 x 6300."""
    from PIL import Image

    Image.new("RGBA", (edge, edge), (30, 90, 160, 255)).save(path, "PNG", optimize=True)


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_decode(png: Path) -> dict:
    """Baseline: Pillow decodes the PNG, nothing else."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    before = _peak_mb()
    with Image.open(png) as im:
        im.load()
    return {"peak_mb": _peak_mb() - before, "statuses": []}


def child_upload(png: Path, at_once: int) -> dict:
    """at_once signed-in uploads of the PNG through the daemon's Flask app, concurrently (greenlets)."""
    from gevent import monkey

    monkey.patch_all()
    import gevent

    from screenpop.daemon.auth import tokens
    from screenpop.daemon.customers.lookup import Lookup
    from screenpop.daemon.customers.photos import Photos
    from screenpop.daemon.push.hub import PushHub
    from screenpop.daemon.push.layout import CardLayout
    from screenpop.daemon.staff import Staff
    from screenpop.daemon.web.server import create_app
    from screenpop.db.database import open_database
    from screenpop.db.migrations import migrate
    from screenpop.db.models import Customer
    from screenpop.db.numbers import NumberRules
    from screenpop.db.worker import DbWorker

    folder = Path(tempfile.mkdtemp(prefix="screenpop-bench-images-"))
    db = open_database(f"sqlite:///{folder / 'bench.db'}")
    migrate(db)
    worker = DbWorker(db)
    worker.start()
    hub = PushHub(worker, lambda: Lookup(db, NumberRules("IS", r"^[1-9][0-9]{1,4}$", 8)), Staff(), CardLayout())
    hub.start()
    app = create_app(hub, Photos(folder / "photos"), heartbeat=1.0)
    _, token = tokens.create(None, role="admin")
    customer = Customer.create(name="Bench", company="Bench ehf")
    clients = []
    for _ in range(at_once):
        client = app.test_client()
        minted = client.post("/api/v1/signin-links", json={"next": "/"}, headers={"Authorization": f"Bearer {token}"})
        client.get(minted.get_json()["url"].split("localhost", 1)[1])
        with client.session_transaction() as session:
            csrf = session["csrf"]
        clients.append((client, csrf))
    body = png.read_bytes()

    def upload(client, csrf) -> int:
        import io

        return client.post(f"/customers/{customer.id}/photo", data={"csrf": csrf, "photo": (io.BytesIO(body), "big.png")},
                           content_type="multipart/form-data").status_code

    before = _peak_mb()
    jobs = [gevent.spawn(upload, client, csrf) for client, csrf in clients]
    gevent.joinall(jobs)
    result = {"peak_mb": _peak_mb() - before, "statuses": sorted(job.value for job in jobs)}
    hub.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--at-once", type=int, nargs="+", default=[1, 6], help="concurrent uploads per run")
    parser.add_argument("--edges", type=int, nargs="+", default=[6300, 4000], help="PNG sizes (square)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PNG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, png = args.child
        if mode.startswith("make"):
            make_png(Path(png), int(mode[4:]))
            return
        out = child_decode(Path(png)) if mode == "decode" else child_upload(Path(png), int(mode))
        print(json.dumps(out))
        return
    print(f"{'run':<40} {'peak RSS above start':>22}  statuses")
    for edge in args.edges:
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "big.png"
            # in a process of its own: Linux keeps a process's peak RSS across fork and exec, so this one stays small
            subprocess.run([sys.executable, __file__, "--child", f"make{edge}", str(png)], check=True)
            print(f"PNG {edge} x {edge} ({edge * edge / 1e6:.1f} Mpixel), {png.stat().st_size / 1024:.0f} KB")
            for mode in ["decode", *map(str, args.at_once)]:
                done = subprocess.run([sys.executable, __file__, "--child", mode, str(png)], capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{mode}: failed\n{done.stderr[-2000:]}")
                    continue
                out = json.loads(done.stdout.strip().splitlines()[-1])
                label = "  baseline: Pillow decodes it once" if mode == "decode" else f"  {mode} upload(s) at once"
                print(f"{label:<40} {out['peak_mb']:>19.0f} MB  {out['statuses']}")


if __name__ == "__main__":
    main()
