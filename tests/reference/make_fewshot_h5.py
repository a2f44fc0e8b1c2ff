#!/usr/bin/python3
"""Write a metatrain dataset HDF5 file for the PyTorch few-shot baseline.

Two sources:
  synthetic  random uint8 images, for timing runs and smoke tests
  idx        MNIST-style IDX files (gzip or plain), e.g. Fashion-MNIST from
             /usr/share/datasets/fashion-mnist/, with the classes of each
             split given like `train=0-5 test=6-9`

Layout (as `metatrain data import` writes it): /<split>/images uint8
[N,C,H,W] (chunked per image), /<split>/labels int32 [N] sorted by class,
/<split>/class_offsets int64 [n_classes+1], /<split>/class_names strings;
root attributes format = "metatrain-dataset", format_version, source.
Within a split, class i is the i-th class listed for it, and the images of a
class keep their order in the IDX files (files concatenated as given).

Examples:
  /usr/bin/python3 tests/reference/make_fewshot_h5.py synthetic /tmp/synth.h5 \\
      --split train=6x7000 --split test=4x7000
  /usr/bin/python3 tests/reference/make_fewshot_h5.py idx /tmp/fmnist.h5 \\
      /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \\
      /usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz \\
      /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \\
      /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz \\
      --split train=0-5 --split test=6-9
"""

import argparse
import gzip
import struct
import sys

import h5py
import numpy as np

FORMAT_VERSION = 1


def parse_classes(text):
    """'0-5' or '0,2,4' or '1-3,7' -> [ints]."""
    out = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-"))
            out += list(range(lo, hi + 1))
        else:
            out.append(int(part))
    return out


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack_from(">HBB", data, 0)
    if zero != 0 or dtype != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack_from(f">{ndim}I", data, 4)
    off = 4 + 4 * ndim
    return np.frombuffer(data, dtype=np.uint8, offset=off).reshape(dims)


def write_dataset(path, splits, source):
    """splits: {name: (images uint8 [N,C,H,W] sorted by class, per-class counts, names)}."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "metatrain-dataset"
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["source"] = source
        for name, (images, counts, names) in splits.items():
            g = f.create_group(name)
            g.create_dataset("images", data=images, chunks=(1, *images.shape[1:]))
            g.create_dataset("labels", data=np.repeat(np.arange(len(counts), dtype=np.int32),
                                                      counts))
            g.create_dataset("class_offsets",
                             data=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
            g.create_dataset("class_names", data=np.array(names, dtype=object),
                             dtype=h5py.string_dtype())
            print(f"{path}:/{name}: {len(counts)} classes, {len(images)} images "
                  f"{'x'.join(map(str, images.shape[1:]))}")


def cmd_synthetic(args):
    rng = np.random.default_rng(args.seed)
    shape = tuple(int(x) for x in args.shape.split("x"))
    splits = {}
    for spec in args.split:
        name, size = spec.split("=")
        n_classes, per_class = (int(x) for x in size.split("x"))
        images = rng.integers(0, 256, size=(n_classes * per_class, *shape), dtype=np.uint8)
        splits[name] = (images, [per_class] * n_classes,
                        [f"class{c}" for c in range(n_classes)])
    write_dataset(args.output, splits, f"synthetic uniform uint8, seed {args.seed}")
    return 0


def cmd_idx(args):
    if len(args.files) % 2:
        raise SystemExit("give IDX files as IMAGES LABELS pairs")
    images, labels = [], []
    for img_path, lab_path in zip(args.files[0::2], args.files[1::2]):
        img, lab = read_idx(img_path), read_idx(lab_path)
        if img.ndim == 3:
            img = img[:, None]                      # [N, H, W] -> [N, 1, H, W]
        if len(img) != len(lab):
            raise SystemExit(f"{img_path}: {len(img)} images but {len(lab)} labels")
        images.append(img)
        labels.append(lab)
    images, labels = np.concatenate(images), np.concatenate(labels)
    splits = {}
    for spec in args.split:
        name, classes = spec.split("=")
        classes = parse_classes(classes)
        idx = [np.flatnonzero(labels == c) for c in classes]
        splits[name] = (images[np.concatenate(idx)], [len(i) for i in idx],
                        [str(c) for c in classes])
    write_dataset(args.output, splits, "idx: " + " ".join(args.files))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synthetic", help="random images")
    s.add_argument("output")
    s.add_argument("--split", action="append", required=True,
                   help="NAME=CLASSESxIMAGES, e.g. train=6x7000 (repeatable)")
    s.add_argument("--shape", default="1x28x28", help="CxHxW")
    s.add_argument("--seed", type=int, default=0)
    i = sub.add_parser("idx", help="IDX image / label file pairs")
    i.add_argument("output")
    i.add_argument("files", nargs="+", help="IMAGES LABELS [IMAGES LABELS]...")
    i.add_argument("--split", action="append", required=True,
                   help="NAME=CLASSES, e.g. train=0-5 (repeatable)")
    args = ap.parse_args()
    return cmd_synthetic(args) if args.cmd == "synthetic" else cmd_idx(args)


if __name__ == "__main__":
    sys.exit(main())
