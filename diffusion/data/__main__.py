"""Command line for the data package.

  python -m diffusion.data prepare mnist --manual_dir ../shared/data/mnist [--data_dir DIR]
  python -m diffusion.data prepare cifar10                  # downloads (network needed)
  python -m diffusion.data pack FOLDER OUT.npz --image_size 64 [--grayscale]
  python -m diffusion.data list [--data_dir DIR]            # names, defaults, prepared?

Errors are printed as one line (``error: ...``) with exit status 2.
"""

import argparse
import sys
import time

from diffusion.config import catalog
from diffusion.data import files, prepare
from diffusion.errors import ConfigError


def _prepare(args) -> None:
  start = time.time()
  path = prepare.prepare_dataset(args.name, manual_dir=args.manual_dir, data_dir=args.data_dir)
  if path is None:
    print(f"{args.name}: nothing to prepare (no tfds data needed).")
  else:
    print(f"{args.name}: prepared at {path} ({time.time() - start:.1f} s).")


def _pack(args) -> None:
  n = files.pack_images(args.folder, args.out, args.image_size, grayscale=args.grayscale,
                        limit=args.limit)
  channels = 1 if args.grayscale else 3
  print(f"wrote {n} images of {args.image_size}x{args.image_size}x{channels} to {args.out}; "
        f"train with --config.data.dataset=npz --config.data.data_dir={args.out} "
        f"--config.data.image_size={args.image_size} --config.data.num_channels={channels}")


def _list(args) -> None:
  print(f"{'dataset':<16} {'kind':<6} {'size':>5} {'ch':>3} {'where':<8} {'examples':<34} ready")
  for name, info in catalog.INFO.items():
    ready = ""
    if info.tfds_name and name != "lsun":
      try:
        import tensorflow_datasets as tfds  # heavy and optional: only tfds sets need it
      except ImportError:  # the light core: nothing can be prepared here
        ready = "needs .[tfds]"
        tfds = None
      ready = ready if tfds is None else "yes" if tfds.builder(info.tfds_name, data_dir=args.data_dir).is_prepared() else "no"
    examples = ", ".join(f"{k} {v}" for k, v in info.num_examples.items())
    where = "device" if info.in_memory else "stream"
    shown = "lsun/<cat>" if name == "lsun" else name
    print(f"{shown:<16} {info.kind:<6} {str(info.image_size or '-'):>5} "
          f"{str(info.num_channels or '-'):>3} {where:<8} {examples:<34} {ready}")


def main(argv=None) -> int:
  from diffusion import cli  # routine tfds/absl warnings ("has no dataset_info.json")
  cli.quiet_logs()
  parser = argparse.ArgumentParser(prog="python -m diffusion.data", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("prepare", help="build a tfds dataset (offline with --manual_dir)")
  p.add_argument("name", help="mnist, fashion_mnist, cifar10, celeb_a, celeb_a_hq[/R], "
                 "lsun/<category>")
  p.add_argument("--manual_dir", default=None,
                 help="folder with the raw files (e.g. ../shared/data/mnist); disables "
                 "the network")
  p.add_argument("--data_dir", default=None, help="tfds data dir (default ~/tensorflow_datasets)")
  p.set_defaults(func=_prepare)
  p = sub.add_parser("pack", help="pack a folder of images into an .npz for data.dataset=npz")
  p.add_argument("folder")
  p.add_argument("out")
  p.add_argument("--image_size", type=int, required=True)
  p.add_argument("--grayscale", action="store_true")
  p.add_argument("--limit", type=int, default=None, help="pack at most this many images")
  p.set_defaults(func=_pack)
  p = sub.add_parser("list", help="dataset names, defaults and whether tfds data is prepared")
  p.add_argument("--data_dir", default=None)
  p.set_defaults(func=_list)
  args = parser.parse_args(argv)
  try:
    args.func(args)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
