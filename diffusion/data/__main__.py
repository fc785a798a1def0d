"""Command line for the data package.

  python -m diffusion.data prepare mnist --manual_dir DIR [--data_dir DIR]   # DIR: the 4 IDX .gz files
  python -m diffusion.data prepare cifar10                  # downloads (network needed)
  python -m diffusion.data pack FOLDER OUT.npz --image_size 64 [--grayscale] [--limit N]
  python -m diffusion.data list [--data_dir DIR]            # names, defaults, prepared?

prepare NAME: mnist, fashion_mnist, cifar10, celeb_a, celeb_a_hq[/R], lsun/<category>.
Errors are printed as one line (``error: ...``) with exit status 2.
"""

import pathlib
import time

from absl import flags

from diffusion import cli
from diffusion.config import catalog
from diffusion.data import files, prepare, prepared, tfds_sources
from diffusion.errors import ConfigError

_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "prepare: the folder with the raw files "
                                  "(MNIST, Fashion-MNIST: the four official IDX .gz files); "
                                  "disables the network.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "prepare, list: tfds data dir (default "
                                "~/tensorflow_datasets).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "pack (required): the side of the "
                                   "packed images, in pixels.")
_GRAYSCALE = flags.DEFINE_bool("grayscale", False, "pack: one channel instead of RGB.")
_LIMIT = flags.DEFINE_integer("limit", None, "pack: at most this many images.")


def _prepare(name) -> None:
  start = time.time()
  if prepare.tfds_name_for(name) is not None:
    source = (f"from the files in --manual_dir={_MANUAL_DIR.value} (the network is off)"
              if _MANUAL_DIR.value else "downloading its files (network needed)")
    print(f"{name}: preparing {source}; tfds builds array_record files under "
          f"{_DATA_DIR.value or prepared.default_data_dir()}", flush=True)
  path = prepare.prepare_dataset(name, manual_dir=_MANUAL_DIR.value, data_dir=_DATA_DIR.value)
  if path is None:
    print(f"{name}: nothing to prepare (no tfds data needed).")
  else:
    print(f"{name}: prepared at {path} ({time.time() - start:.1f} s): "
          f"{tfds_sources.split_sizes(path)} examples.")


def _pack(folder, out) -> None:
  size = _IMAGE_SIZE.value
  if size is None:
    raise ConfigError("pack needs --image_size N (the side of the packed images, in "
                      f"pixels). {usage('pack')}")
  n = files.pack_images(folder, out, size, grayscale=_GRAYSCALE.value, limit=_LIMIT.value)
  channels = 1 if _GRAYSCALE.value else 3
  print(f"wrote {n} images of {size}x{size}x{channels} to {out}; "
        f"train with --config.data.dataset=npz --config.data.data_dir={out} "
        f"--config.data.image_size={size} --config.data.num_channels={channels}")


def readiness(name: str, data_dir: str = "") -> str:
  """The ``ready`` column of ``data list`` for dataset ``name``: whether training can read
  it now, and what to do when not. Reads no tfds (the light core answers too)."""
  info = catalog.INFO[name]
  if info.kind == "toy":
    return "yes (generated)"
  if name == "digits":
    return "yes (built in: scikit-learn)"
  if name == "npz":
    return "your .npz (data.data_dir)"
  if name == "cifar10_sample":
    return ("yes (../shared/data)" if files.cifar10_sample_dir("").is_dir()
            else "no: give data.data_dir")
  root = pathlib.Path(data_dir).expanduser() if data_dir else prepared.default_data_dir()
  if name in ("lsun", "celeb_a_hq"):
    done = sorted(p.name for p in (root / name).glob("*")
                  if prepared.version_dir(f"{name}/{p.name}", data_dir) is not None)
    return f"yes: {', '.join(done)}" if done else f"no: prepare {name}/<...>"
  if prepared.version_dir(info.tfds_name, data_dir) is not None:
    return "yes"
  return f"no: prepare {name}" + (" --manual_dir DIR" if name in tfds_sources.MANUAL_FILES
                                   else "")


def _list() -> None:
  where_data = _DATA_DIR.value or str(prepared.default_data_dir())
  print(f"{'dataset':<16} {'kind':<6} {'size':>5} {'ch':>3} {'where':<8} {'examples':<34} ready "
        f"(prepared data under {where_data})")
  for name, info in catalog.INFO.items():
    examples = ", ".join(f"{k} {v}" for k, v in info.num_examples.items())
    where = "device" if info.in_memory else "stream"
    shown = "lsun/<cat>" if name == "lsun" else name
    print(f"{shown:<16} {info.kind:<6} {str(info.image_size or '-'):>5} "
          f"{str(info.num_channels or '-'):>3} {where:<8} {examples:<34} "
          f"{readiness(name, _DATA_DIR.value or '')}")


# command -> (its function, the names of its positional arguments, its flags, its usage)
COMMANDS = {
    "prepare": (_prepare, ("NAME",), ("manual_dir", "data_dir"),
                "prepare NAME [--manual_dir DIR] [--data_dir DIR]"),
    "pack": (_pack, ("FOLDER", "OUT.npz"), ("image_size", "grayscale", "limit"),
             "pack FOLDER OUT.npz --image_size N [--grayscale] [--limit N]"),
    "list": (_list, (), ("data_dir",), "list [--data_dir DIR]"),
}


_FLAGS = tuple(dict.fromkeys(name for c in COMMANDS.values() for name in c[2]))


USAGE = ("usage: python -m diffusion.data prepare NAME | pack FOLDER OUT.npz --image_size N | "
         "list  (--help: the flags)")


def usage(command: str) -> str:
  return f"usage: python -m diffusion.data {COMMANDS[command][3]}"


def _command(argv) -> None:
  """Runs the command ``argv[1]`` on ``argv[2:]``; ConfigError for a bad command line."""
  fn, positional, own, _ = COMMANDS[cli.subcommand(argv, COMMANDS, USAGE)]
  args = argv[2:]
  if len(args) != len(positional):
    given = f"got {' '.join(args)!r}" if args else "got none"
    raise ConfigError(f"{argv[1]} takes {' '.join(positional) or 'no arguments'}; {given}. "
                      f"{usage(argv[1])}")
  foreign = [f"--{name}" for name in _FLAGS if name not in own and flags.FLAGS[name].present]
  if foreign:
    raise ConfigError(f"{', '.join(foreign)}: not a flag of {argv[1]}. {usage(argv[1])}")
  fn(*args)


def main(argv) -> int:
  """``argv``: the program, the command, its positional arguments (absl took the flags)."""
  return cli.report(lambda: _command(argv), ConfigError)


if __name__ == "__main__":
  cli.run(main)
