"""Peak memory of the same image-folder study over two folder sizes: memory should stay flat as the folder grows.

    python benchmarks/image_memory.py [--sizes 10000 40000] [--distinct 3000] [--image-size 24] [--workers 2] [--parallel 2]

It writes ``--distinct`` generated shape PNGs (nnsearch.data.example_images, 3 classes) once;
each size's folder holds that many files, hard links that cycle through those images under new names
(the pipeline reads every path, so memory sees a folder of that size; writing 40k PNGs on a busy
2-core machine took longer than the study). For each size it runs one study through the real CLI: a small CNN, one trial,
2 folds side by side, one epoch, the images read from disk per batch by DataLoader workers
(``data.cache_mb=0``: both sizes above the cache line). While it runs, the memory of the whole
process tree (the command, its fold processes and their DataLoader workers) is sampled every 0.2 s:
the peak of the summed proportional set size (PSS: shared pages counted once, split between the
processes sharing them) and the peak of the largest single process's RSS. It prints both, the
wall time and the ratio of the larger folder's peaks to the smaller's (target: at most 1.2).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def sample_tree(pid: int, peaks: dict[str, float], done: threading.Event) -> None:
    """Peak summed PSS and peak single RSS (MiB) of ``pid`` and all its descendants until ``done``."""
    import psutil

    root = psutil.Process(pid)
    while not done.is_set():
        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        pss, largest = 0.0, 0.0
        for process in processes:
            try:
                info = process.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            pss += info.pss
            largest = max(largest, info.rss)
        peaks["pss_mib"] = max(peaks.get("pss_mib", 0.0), pss / 2**20)
        peaks["largest_rss_mib"] = max(peaks.get("largest_rss_mib", 0.0), largest / 2**20)
        done.wait(0.2)


def linked_folder(source: Path, target: Path, size: int) -> None:
    """``target/CLASS/NNNNNN.png``: ``size`` hard links cycling through each class's files of ``source``."""
    classes = sorted(p.name for p in source.iterdir())
    for name in classes:
        files = sorted((source / name).iterdir())
        (target / name).mkdir(parents=True)
        for n in range(size // len(classes)):
            (target / name / f"{n:06d}.png").hardlink_to(files[n % len(files)])


def run(size: int, images: Path, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=images.parent) as tmp:
        started = time.perf_counter()
        linked_folder(images, Path(tmp) / "images", size)
        written = time.perf_counter() - started
        command = [
            sys.executable, "-m", "nnsearch", "data=image_folder", "data.path=images", "model=cnn", "model.channels=8", "model.n_blocks=2",
            "study.n_trials=1", "cv.folds=2", f"cv.parallel={args.parallel}", "trainer.max_epochs=1", "data.cache_mb=0",
            f"data.num_workers={args.workers}", "data.batch_size=128", "final.retrain=false", "report.study_plots=false",
            "tracking.trial_plots=none", "report.progress=off", "study.name=image_memory",
        ]
        peaks: dict[str, float] = {}
        done = threading.Event()
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler = threading.Thread(target=sample_tree, args=(process.pid, peaks, done), daemon=True)
        sampler.start()
        _, err = process.communicate()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        if process.returncode != 0:
            raise SystemExit(f"the study on {size} images failed:\n{err[-3000:]}")
        return {"images": size, "write_s": written, "study_s": wall, **peaks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[10000, 40000])
    parser.add_argument("--image-size", type=int, default=24)
    parser.add_argument("--distinct", type=int, default=3000, help="distinct images written; the folders link to them")
    parser.add_argument("--workers", type=int, default=2, help="data.num_workers")
    parser.add_argument("--parallel", type=int, default=2, help="cv.parallel")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from nnsearch.data.example_images import SHAPES, write_shapes

    with tempfile.TemporaryDirectory() as tmp:
        images = write_shapes(Path(tmp) / "base", per_class=args.distinct // len(SHAPES), size=args.image_size)
        rows = [run(size, images, args) for size in args.sizes]
    print(f"{'images':>8} {'link s':>8} {'study s':>8} {'peak PSS MiB (tree)':>20} {'peak RSS MiB (largest process)':>31}")
    for row in rows:
        print(f"{row['images']:>8} {row['write_s']:>8.1f} {row['study_s']:>8.1f} {row['pss_mib']:>20.0f} {row['largest_rss_mib']:>31.0f}")
    small, large = rows
    print(f"ratio {large['images']}/{small['images']} images: tree PSS {large['pss_mib'] / small['pss_mib']:.2f}x, "
          f"largest process {large['largest_rss_mib'] / small['largest_rss_mib']:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
