"""How fast chapter 03's models (and chapter 02's AlexNet) train whole on this machine: compute only, by batch size and XLA.

Every trial trains one model on one random batch held in memory (no decoding), with the
CoronaHack augmentation on each batch as training applies it, as :func:`xrayutils.benchmark.compute_only`
times it, and reports images/s and achieved GFLOP/s (conv and dense layers counted, trainable ones
three times).  Run it with TF_NUM_INTRAOP_THREADS set to compare thread counts.

    python benchmarks/whole_network_speed.py --models ResNet34 Xception --image-size 64 --batch-sizes 16 32 64
    python benchmarks/whole_network_speed.py --models ResNet34 --jit-compile true false --output speed.json

Chapter 03 (``left_out_costs: stored``) reads the nine models' step times at its image and batch size from
xrayutils/measurements/coronahack_step_times.json, made with

    python benchmarks/whole_network_speed.py --models Xception VGG16 VGG19 ResNet101V2 InceptionV3 \
        InceptionResNetV2 EfficientNetV2S EfficientNetV2M ResNet34 --image-size 96 --batch-sizes 16 --steps 2 \
        --output xrayutils/measurements/coronahack_step_times.json

and the nine under the paper profile's GPU switches (mixed_float16, XLA where it compiles quickly) with

    python benchmarks/whole_network_speed.py --models Xception VGG16 VGG19 ResNet101V2 InceptionV3 \
        InceptionResNetV2 EfficientNetV2S EfficientNetV2M ResNet34 --image-size 75 --batch-sizes 16 --steps 2 \
        --mixed-precision mixed_float16 --output xrayutils/measurements/paper_switches_cpu.json

On a CPU with native bfloat16 (flags amx_bf16 or avx512_bf16), the measurement behind ``mixed_precision: auto``'s
choice there (:mod:`xrayutils.precision`), both policies in turn:

    python benchmarks/whole_network_speed.py --models Xception VGG16 VGG19 ResNet101V2 InceptionV3 \
        InceptionResNetV2 EfficientNetV2S EfficientNetV2M ResNet34 --image-size 96 --batch-sizes 16 --steps 3 \
        --mixed-precision false mixed_bfloat16 --frozen-forward --output xrayutils/measurements/bfloat16_speedups.json
    python benchmarks/whole_network_speed.py --models AlexNet --image-size 128 --batch-sizes 10 --steps 3 \
        --mixed-precision false mixed_bfloat16 --output xrayutils/measurements/bfloat16_speedups.json --append

(the second: chapter 02's AlexNet at its ``cpu`` size and batch), and chapter 03's eight backbones frozen, as its
``cpu`` profile's linear probes encode the images (96 px, batch 32):

    python benchmarks/whole_network_speed.py --models Xception VGG16 VGG19 ResNet101V2 InceptionV3 \
        InceptionResNetV2 EfficientNetV2S EfficientNetV2M --image-size 96 --batch-sizes 32 --steps 3 \
        --mixed-precision false mixed_bfloat16 --frozen-forward --forward-only \
        --output xrayutils/measurements/bfloat16_speedups.json --append
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
    parser.add_argument("--models", nargs="+", default=["ResNet34"], help="chapter 03 model names, or AlexNet (chapter 02's, four classes)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    parser.add_argument("--jit-compile", nargs="+", default=["false"], choices=["true", "false"], help="XLA off and/or on")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per trial (after two warm-up steps)")
    parser.add_argument("--no-augment", action="store_true", help="time the model alone, without the augmentation")
    parser.add_argument("--mixed-precision", nargs="+", default=["false"], choices=["false", "mixed_float16", "mixed_bfloat16"],
                        help="Keras policies, timed in turn for each trial (mixed_float16: the GPU's, with loss scaling)")
    parser.add_argument("--frozen-forward", action="store_true",
                        help="also time task 1's VGG16 frozen base forward (feature caching's work) at --forward-size px, "
                             "and each --models backbone's frozen base forward at --image-size (chapter 03's linear probes)")
    parser.add_argument("--forward-size", type=int, default=224)
    parser.add_argument("--forward-only", action="store_true", help="with --frozen-forward: time only the forwards, no training")
    parser.add_argument("--keras-batch-norm", action="store_true",
                        help="Keras' own batch normalisation, op by op, instead of the book's fused one (models.FusedBatchNormalization)")
    parser.add_argument("--output", type=Path, help="write the table here as JSON")
    parser.add_argument("--append", action="store_true", help="keep the rows already in --output, add these")
    args = parser.parse_args(argv)

    import keras
    import pandas as pd
    import tensorflow as tf

    from xrayutils import benchmark, book, caching, catalogue, chapter_models, chapters, datasets, models, plan, precision, results
    from xrayutils.protocol import TrainingProtocol

    base = TrainingProtocol(study="coronahack", image_size=args.image_size, batch_size=1, num_epochs=1, optimizer="adam",
                            learning_rate=1e-3, validation_fraction=0.1, seed=0, weights="none", augment=not args.no_augment)
    policies = ["float32" if p == "false" else p for p in args.mixed_precision]
    rows = []

    def add(row: dict) -> None:
        rows.append({**row, "threads": os.environ.get("TF_NUM_INTRAOP_THREADS", "all")})
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1, float_format=lambda v: f"{v:.2f}"), flush=True)

    for name in [] if args.forward_only else args.models:
        trains_it = chapters.record(chapters.TASK2 if name == "AlexNet" else chapters.CORONAHACK)
        own = dataclasses.replace(base, study=trains_it.study)
        build = partial(models.build, trains_it.study, name, own.input_shape, len(datasets.classes(trains_it.dataset, trains_it.task)),
                        models.resolve_weights("none"), fused_batch_norm=not args.keras_batch_norm)
        keras.mixed_precision.set_global_policy("float32")
        flops = benchmark.train_step_flops(build())
        for batch in args.batch_sizes:
            for jit in args.jit_compile:
                for policy in policies:  # alternating, so that a change in the machine's load touches both alike
                    keras.backend.clear_session()
                    keras.mixed_precision.set_global_policy(policy)
                    protocol = dataclasses.replace(own, batch_size=batch, jit_compile=jit == "true")
                    step = benchmark.compute_only(build, protocol, steps=args.steps)
                    add({"model": name, "work": precision.WHOLE_NETWORK, "image size": args.image_size, "batch": batch,
                         "batch norm": "Keras" if args.keras_batch_norm else "fused",
                         "augment": protocol.augment, "XLA asked": jit, "precision": policy, "s/step": step,
                         "images/s": batch / step, "GFLOP/s": batch / step * flops / 1e9})
    if args.frozen_forward:
        probe = (args.image_size, args.image_size, 3)  # chapter 03's backbones frozen, as its cpu profile trains them
        task1 = (args.forward_size, args.forward_size, 3)
        forwards = [("VGG16", task1, partial(models.build, "class-challenge", "VGG16", task1, 2, models.resolve_weights("none")))]
        forwards += [(name, probe, partial(chapter_models.backbone_classifier, name, probe, 2, None, fine_tune=False))
                     for name in args.models if name in catalogue.BACKBONES]
        for name, shape, build_frozen in forwards:
            for batch in args.batch_sizes:
                images = tf.random.uniform((batch, *shape), 0, 255, seed=0)
                for policy in policies:
                    keras.backend.clear_session()
                    keras.mixed_precision.set_global_policy(policy)
                    encoder, _ = caching.split_frozen(build_frozen())
                    seconds = plan.forward_seconds(encoder, images, args.steps)
                    add({"model": name, "work": precision.FROZEN_FORWARD, "image size": shape[0], "batch": batch,
                         "augment": False, "XLA asked": "false", "precision": policy, "s/step": seconds * batch,
                         "images/s": 1 / seconds})
    keras.mixed_precision.set_global_policy("float32")
    if args.output:
        kept = results.read_json(args.output) if args.append and args.output.is_file() else {}
        command = " ".join(["benchmarks/whole_network_speed.py", *(sys.argv[1:] if argv is None else argv)])
        results.write_json_atomic(args.output, {"device": book.device(), "versions": book.versions(), "commit": book.git_commit(),
                                                "commands": [*kept.get("commands", []), command], "rows": kept.get("rows", []) + rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
