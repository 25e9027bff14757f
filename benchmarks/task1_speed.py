"""Benchmark the task-1 model's training speed: compute only, the book's pipeline (with and without
feature caching) and the original ImageDataGenerator style.  See README.md beside this file.

    python benchmarks/task1_speed.py --data-dir ../shared/data                  # a few minutes
    python benchmarks/task1_speed.py --data-dir ../shared/data --full-protocol  # + 40 epochs three ways
    python benchmarks/task1_speed.py --data-dir ../shared/data --full-protocol --seeds 5 --skip-speed  # the accuracy gap, 5 seeds
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("XRAY_DATA_DIR", ""), help="folder holding covid-xray/")
    parser.add_argument("--image-size", type=int, default=224, help="published: 224")
    parser.add_argument("--timed-epochs", type=int, default=2, help="epochs per timed fit (the first is left out of the medians)")
    parser.add_argument("--repeats", type=int, default=3, help="each method is timed this often; the median is kept")
    parser.add_argument("--augmented-views", type=int, default=3, help="augmented views per image with feature caching")
    parser.add_argument("--compute-steps", type=int, default=20, help="training steps of the compute-only run")
    parser.add_argument("--max-images-per-class", type=int, default=0, help="0 keeps every image")
    parser.add_argument("--full-protocol", action="store_true",
                        help="also train 40 epochs book style and original style and score the test split")
    parser.add_argument("--seeds", type=int, default=1, help="with --full-protocol: train each style with seeds 1..N")
    parser.add_argument("--epochs", type=int, default=40, help="with --full-protocol: epochs (published: 40)")
    parser.add_argument("--bfloat16", action="store_true",
                        help="with --full-protocol: feature caching in float32 and in bfloat16 (mixed_bfloat16), compared seed by seed")
    parser.add_argument("--skip-speed", action="store_true", help="with --full-protocol: only train and score, no speed table")
    parser.add_argument("--output", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    from xrayutils import benchmark, book, results

    print(f"device: {book.device()}")
    payload = {}
    if not args.skip_speed:
        result = benchmark.run(args.data_dir or None, image_size=args.image_size, timed_epochs=args.timed_epochs, repeats=args.repeats,
                               augmented_views=args.augmented_views, compute_steps=args.compute_steps,
                               max_images_per_class=args.max_images_per_class or None)
        print(f"one training step: {result['train_step_gflop_per_image']:.2f} GFLOP per image")
        print(result["table"].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        for name, ratio in result["ratios"].items():
            print(f"{name}: {ratio:.2f}")
        payload = {**result, "table": result["table"].to_dict("records")}
    if args.full_protocol:
        styles, against, called = ((benchmark.STYLES[0], benchmark.CACHED_BFLOAT16), benchmark.STYLES[0], "float32") if args.bfloat16 \
            else (benchmark.STYLES, benchmark.STYLES[2], "original")
        full = benchmark.full_protocol(args.data_dir or None, image_size=args.image_size, augmented_views=args.augmented_views,
                                       seeds=tuple(range(1, args.seeds + 1)), num_epochs=args.epochs, styles=styles)
        print(full.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        comparison = benchmark.seed_comparison(full, against=against, called=called)
        print(comparison.to_string(index=False))
        payload.update(full_protocol=full.to_dict("records"), seed_comparison=comparison.to_dict("records"), called=called,
                       full_protocol_settings={"image_size": args.image_size, "num_epochs": args.epochs,
                                               "augmented_views": args.augmented_views, "seeds": args.seeds})
    if args.output:
        results.write_json_atomic(args.output, {**payload, "device": book.device(), "versions": book.versions(),
                                                "commit": book.git_commit()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
