"""How fast chapter 03's models train whole on this machine: compute only, by batch size and XLA.

Every trial trains one model on one random batch held in memory (no decoding), with the
CoronaHack augmentation on each batch as training applies it, as :func:`xrayutils.benchmark.compute_only`
times it, and reports images/s and achieved GFLOP/s (conv and dense layers counted, trainable ones
three times).  Run it with TF_NUM_INTRAOP_THREADS set to compare thread counts.

    python benchmarks/whole_network_speed.py --models ResNet34 Xception --image-size 64 --batch-sizes 16 32 64
    python benchmarks/whole_network_speed.py --models ResNet34 --jit-compile true false --output speed.json

Chapter 03 (``left_out_costs: stored``) reads the nine models' step times at its image and batch size from
benchmarks/results/coronahack_step_times.json, made with

    python benchmarks/whole_network_speed.py --models Xception VGG16 VGG19 ResNet101V2 InceptionV3 \
        InceptionResNetV2 EfficientNetV2S EfficientNetV2M ResNet34 --image-size 96 --batch-sizes 16 --steps 2 \
        --output benchmarks/results/coronahack_step_times.json

and the nine under the paper profile's GPU switches (mixed_float16, XLA where it compiles quickly) with

    python benchmarks/whole_network_speed.py --models Xception VGG16 VGG19 ResNet101V2 InceptionV3 \
        InceptionResNetV2 EfficientNetV2S EfficientNetV2M ResNet34 --image-size 75 --batch-sizes 16 --steps 2 \
        --mixed-precision mixed_float16 --output benchmarks/results/paper_switches_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from functools import partial
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ResNet34"], help="chapter 03 model names")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--jit-compile", nargs="+", default=["false"], choices=["true", "false"], help="XLA off and/or on")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per trial (after two warm-up steps)")
    parser.add_argument("--no-augment", action="store_true", help="time the model alone, without the augmentation")
    parser.add_argument("--mixed-precision", default="false", choices=["false", "mixed_float16", "mixed_bfloat16"],
                        help="Keras policy (mixed_float16: the GPU's, with loss scaling, as the paper profile trains on a GPU)")
    parser.add_argument("--output", type=Path, help="write the table here as JSON")
    args = parser.parse_args(argv)

    import keras
    import pandas as pd

    from xrayutils import benchmark, book, models, results, train
    from xrayutils.protocol import TrainingProtocol

    base = TrainingProtocol(study="coronahack", image_size=args.image_size, batch_size=1, num_epochs=1, optimizer="adam",
                            learning_rate=1e-3, validation_fraction=0.1, seed=0, weights="none", augment=not args.no_augment)
    rows = []
    switch = args.mixed_precision if args.mixed_precision != "false" else False
    for name in args.models:
        train.set_precision(switch)
        build = partial(models.build, "coronahack", name, base.input_shape, 2, models.resolve_weights("none"))
        flops = benchmark.train_step_flops(build())
        for batch in args.batch_sizes:
            for jit in args.jit_compile:
                keras.backend.clear_session()  # which also resets Keras' dtype policy
                precision = train.set_precision(switch)
                protocol = dataclasses.replace(base, batch_size=batch, jit_compile=jit == "true")
                step = benchmark.compute_only(build, protocol, steps=args.steps)
                rows.append({"model": name, "image size": args.image_size, "batch": batch, "augment": protocol.augment, "XLA asked": jit,
                             "precision": precision,
                             "threads": os.environ.get("TF_NUM_INTRAOP_THREADS", "all"), "s/step": step,
                             "images/s": batch / step, "GFLOP/s": batch / step * flops / 1e9})
                print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format=lambda v: f"{v:.2f}"),
                      flush=True)
    if args.output:
        results.write_json_atomic(args.output, {"device": book.device(), "versions": book.versions(), "commit": book.git_commit(),
                                                "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
