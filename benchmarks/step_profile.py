"""Where one whole-network training step of chapter 03's models goes on this CPU: TensorFlow's profiler, ops by kind.

    python benchmarks/step_profile.py --models ResNet34 EfficientNetV2S --image-size 96 --batch-size 16

For each model it traces ``--steps`` training steps on one random batch in memory (the CoronaHack augmentation
on each batch, as training applies it) and prints seconds per step by kind of op
(:func:`xrayutils.profiling.breakdown`) and the op types that took longest.  Set TF_NUM_INTRAOP_THREADS,
TF_NUM_INTEROP_THREADS or TF_ENABLE_ONEDNN_OPTS to profile another setting.
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
    parser.add_argument("--models", nargs="+", default=["ResNet34", "EfficientNetV2S"], help="chapter 03 model names")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="traced training steps (after warm-up)")
    parser.add_argument("--jit-compile", action="store_true", help="XLA on")
    parser.add_argument("--keras-batch-norm", action="store_true", help="Keras' own batch normalisation instead of the fused one")
    parser.add_argument("--top", type=int, default=12, help="op types to list per model")
    parser.add_argument("--output", type=Path, help="write the tables here as JSON")
    args = parser.parse_args(argv)

    import keras

    from xrayutils import book, models, profiling, results
    from xrayutils.protocol import TrainingProtocol

    protocol = TrainingProtocol(study="coronahack", image_size=args.image_size, batch_size=args.batch_size, num_epochs=1,
                                optimizer="adam", learning_rate=1e-3, validation_fraction=0.1, seed=0, weights="none",
                                augment=True, jit_compile=args.jit_compile)
    settings = {k: os.environ.get(k, "default") for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_ENABLE_ONEDNN_OPTS")}
    settings["batch norm"] = "Keras" if args.keras_batch_norm else "fused"
    print(f"device: {book.device()}; {settings}; XLA {'on' if args.jit_compile else 'off'}")
    payload = {"device": book.device(), "versions": book.versions(), "commit": book.git_commit(), "settings": settings,
               "image size": args.image_size, "batch": args.batch_size, "models": {}}
    for name in args.models:
        keras.backend.clear_session()
        build = partial(models.build, "coronahack", name, protocol.input_shape, 2, models.resolve_weights("none"),
                        fused_batch_norm=not args.keras_batch_norm)
        xspace, wall = profiling.profile_steps(build, dataclasses.replace(protocol), steps=args.steps)
        table = profiling.breakdown(xspace, steps=args.steps, wall_seconds=wall)
        top = profiling.top_ops(xspace, steps=args.steps, n=args.top)
        print(f"\n{name}: {args.batch_size / (wall / args.steps):.1f} images/s while traced")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(top.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        payload["models"][name] = {"breakdown": table.to_dict("records"), "top ops": top.to_dict("records")}
    if args.output:
        results.write_json_atomic(args.output, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
