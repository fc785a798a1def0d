"""``python -m diffusion.pretrained import SRC --workdir=DIR`` | ``export --workdir=DIR --out=OUT``.

  import SRC --workdir=DIR [--config=configs/ddpm/<dataset>.py] [--config.x=y ...] [--raw]
      SRC: a diffusers folder (config.json + diffusion_pytorch_model.safetensors or .bin;
      or a pipeline folder with unet/), a Hugging Face id such as google/ddpm-cifar10-32
      (fetched with huggingface_hub, the hub extra, or taken from its cache), or a DDPM
      TensorFlow checkpoint (its folder or the prefix .../model.ckpt-N). The dataset's config is told from SRC's name
      (cifar10, celebahq, church, bedroom, cat) unless --config is given. --raw: a TF
      checkpoint's raw weights instead of its EMA shadows.
      SRC may also be an official NCSN / NCSNv2 checkpoint (checkpoint*.pth): its EMA
      weights (--raw: the trained ones), with --config=configs/ncsn/<dataset>.py or the
      release's config.yml beside it; a config whose network or σ ladder differs from the
      checkpoint's is refused in one line.
  export --workdir=DIR --out=OUT [--checkpoint_step=N]
      The run's EMA weights as a diffusers folder (UNet2DModel.from_pretrained(OUT)).

Errors are one line ``error: ...`` on stderr with exit status 2 (``diffusion/cli.py``).
"""

import os
import sys

from absl import flags
from ml_collections import config_flags

from diffusion import cli
from diffusion.errors import ConfigError
from diffusion.pretrained import hub

USAGE = ("usage: python -m diffusion.pretrained import SRC --workdir=DIR [--config=FILE] "
         "[--raw] | export --workdir=DIR --out=OUT [--checkpoint_step=N]")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "import: the dataset's config file (default: told from SRC's name).",
    lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "The run: written by import (new or empty "
                               "folder), read by export.")
_OUT = flags.DEFINE_string("out", None, "export: the diffusers folder to write (new or empty).")
_RAW = flags.DEFINE_bool("raw", False, "import of a TF checkpoint: the raw weights instead of "
                         "the EMA shadow variables.")
_STEP = flags.DEFINE_integer("checkpoint_step", -1, "export: the checkpoint (-1: latest).")


def _import(args) -> None:
  from diffusion.pretrained import importer  # pylint: disable=import-outside-toplevel
  if len(args) != 1:
    raise ConfigError(f"import takes one SRC (a diffusers folder, a Hugging Face id or a TF "
                      "checkpoint); got "
                      f"{len(args)}. {USAGE}")
  src = args[0]
  if _OUT.value is not None or _STEP.value != -1:
    raise ConfigError("--out and --checkpoint_step are export's flags.")
  hub_id = src if hub.is_hub_id(src) else None
  if hub_id:   # google/ddpm-cifar10-32: the hub, or its cache
    src = hub.fetch(hub_id)
  if not os.path.exists(src) and not os.path.exists(src + ".index"):
    raise ConfigError(f"{src}: no such file or folder (nor a Hugging Face id owner/name).")
  ncsn = importer.is_torch_checkpoint(src)
  run_import = importer.import_ncsn if ncsn else importer.import_weights
  print(f"importing {src}: reading the weights, checking them against the network, "
        f"writing the run to {_WORKDIR.value}", flush=True)
  r = run_import(src, _WORKDIR.value, config=_CONFIG.value, raw=_RAW.value,
                 config_name=cli.config_file(sys.argv))
  net = r["network"]
  if ncsn:
    shape = (f"{net['name']}, ngf {net['ngf']}, {net['num_levels']} noise levels, "
             f"{net['image_size']} px images")
  else:
    shape = (f"ch {net['ch']}, ch_mult {tuple(net['ch_mult'])}, attention at "
             f"{', '.join(map(str, net['attn_resolutions'])) or 'no'} px, "
             f"{net['image_size']} px images")
  source = f"{hub_id} ({r['source']})" if hub_id else r["source"]
  print(f"imported {source} ({r['format']}; {r['weights']}): {r['num_params']:,} "
        f"parameters, {shape}", flush=True)
  for note in r["notes"]:
    print(note, flush=True)
  stored = _megabytes(os.path.join(r["workdir"], "checkpoints"))
  print(f"wrote {r['workdir']}: config.json (from {r['config_file']}), checkpoints/{r['step']} "
        f"({stored:.1f} MB: these weights twice, as the parameters and their EMA, the form "
        f"train.py resumes from to fine-tune), pretrained.json\nsample: python sample.py "
        f"--workdir={r['workdir']}", flush=True)


def _megabytes(folder: str) -> float:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(folder)
             for f in names) / 2**20


def _export(args) -> None:
  from diffusion.pretrained.export import export_run  # pylint: disable=import-outside-toplevel
  if args:
    raise ConfigError(f"export takes no positional arguments (got {args[0]!r}). {USAGE}")
  if not _OUT.value:
    raise ConfigError(f"export needs --out=OUT, the diffusers folder to write. {USAGE}")
  if _RAW.value or _CONFIG.value is not None:
    raise ConfigError("--raw and --config are import's flags; export reads the run's config.")
  if _STEP.value < -1:
    raise ConfigError(f"--checkpoint_step={_STEP.value} is not valid; give a saved step, or -1 "
                      "for the latest.")
  r = export_run(_WORKDIR.value, _OUT.value, _STEP.value)
  print(f"exported checkpoint {r['step']} of {_WORKDIR.value} ({r['num_params']:,} EMA "
        f"parameters) to {r['out']}: {', '.join(r['files'])}\nPyTorch: "
        f"diffusers.UNet2DModel.from_pretrained({r['out']!r})", flush=True)


def run(argv) -> None:
  commands = {"import": _import, "export": _export}
  name = cli.subcommand(argv, commands, USAGE)
  if not _WORKDIR.value:
    raise ConfigError(f"--workdir is required. {USAGE}")
  commands[name](argv[2:])


def main(argv):
  cli.run_main(lambda: run(argv), ConfigError)


if __name__ == "__main__":
  cli.run(main)
