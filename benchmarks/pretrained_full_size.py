"""Full-size check of ``diffusion.pretrained`` against diffusers: the 35.7M CIFAR-10 U-Net.

  python benchmarks/pretrained_full_size.py --diffusers_python=/tmp/venv-diffusers/bin/python \
      [--workdir=/tmp/pretrained_full_size]

Run with the project's Python (jax); ``--diffusers_python`` is a Python with torch and
diffusers (see tests/fixtures/make_diffusers_fixture.py for the venv). Steps:

1. (diffusers) a UNet2DModel with google/ddpm-cifar10-32's config (35,746,307
   parameters) and random weights (seed 0; N(0, 1/fan_in) weights, N(0, 0.1²) biases,
   GroupNorm 1 + N(0, 0.2²) / N(0, 0.2²)), saved with ``save_pretrained`` (safetensors)
   and as a torch pickle under the pre-rename attention names; its ε on 4 fixed inputs
   x ~ N(0, I) at t = 0, 10, 500, 999;
2. (here) ``python -m diffusion.pretrained import`` of both folders, timed; ε of the run
   (the EMA parameters, as ``diffusion.load(DIR).eps``) against diffusers' ε;
3. (here) ``python -m diffusion.pretrained export``, then (diffusers)
   ``UNet2DModel.from_pretrained`` of the export: its tensors and its ε against step 1;
4. (here, when TensorFlow is installed) the same weights written by TensorFlow as a
   DDPM checkpoint (tests/fixtures/make_ddpm_tf_fixture.py: EMA shadows, Adam slots),
   imported without TensorFlow: ε against step 1.

Prints one line per figure and exits 1 when ε differs by more than 1e-4 (max abs,
|ε| ~ 1) or the exported weights are not bit-identical.

Measured (2026-12-03, 2 shared CPU cores; torch 2.13.0+cpu, diffusers 0.42.1, jax 0.10.2):
35,746,307 parameters on both sides; ε max |diff| 1.11e-5 (max |ε| 2.6, relative 4.3e-6)
from the safetensors, the pickle and the TF checkpoint alike; import 8.8 s / 9.5 s / 9.2 s
(wall, including the interpreter start); export 6.2 s, its tensors bit-identical to
diffusers' and its ε in diffusers identical (max |diff| 0).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR10 = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
               layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                                     "DownBlock2D"),
               up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
               act_fn="silu", attention_head_dim=None, center_input_sample=False,
               downsample_padding=0, flip_sin_to_cos=False, freq_shift=1,
               mid_block_scale_factor=1, norm_eps=1e-6, norm_num_groups=32,
               time_embedding_type="positional")
OLD = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


# ---- the diffusers side (run with --diffusers_python) ---------------------------------


def _make(out: str) -> None:
  import collections  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from diffusers import UNet2DModel  # pylint: disable=import-outside-toplevel
  model = UNet2DModel(**CIFAR10).eval()
  gen = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for name, p in model.named_parameters():
      module = model.get_submodule(name.rsplit(".", 1)[0])
      if isinstance(module, torch.nn.GroupNorm):
        p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=gen))
      elif name.endswith("bias"):
        p.copy_(0.1 * torch.randn(p.shape, generator=gen))
      else:
        p.copy_(torch.randn(p.shape, generator=gen) / float(np.prod(p.shape[1:])) ** 0.5)
  new = os.path.join(out, "ddpm-cifar10-32-random")
  model.save_pretrained(new, safe_serialization=True)
  old = os.path.join(out, "ddpm-cifar10-32-random-oldnames-bin")
  os.makedirs(old)
  shutil.copy(os.path.join(new, "config.json"), old)
  state = collections.OrderedDict()
  for k, v in model.state_dict().items():
    for a, b in OLD.items():
      if ".attentions." in k and f".{a}." in k:
        k = k.replace(f".{a}.", f".{b}.")
    state[k] = v
  torch.save(state, os.path.join(old, "diffusion_pytorch_model.bin"))
  x = torch.randn((4, 3, 32, 32), generator=torch.Generator().manual_seed(1))
  t = torch.tensor([0, 10, 500, 999])
  with torch.no_grad():
    eps = model(x, t).sample
  np.savez(os.path.join(out, "reference.npz"), x=x.permute(0, 2, 3, 1).numpy(),
           t=t.numpy().astype(np.int32), eps=eps.permute(0, 2, 3, 1).numpy())
  print(json.dumps({"num_params": sum(p.numel() for p in model.parameters())}))


def _check(out: str) -> None:
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from diffusers import UNet2DModel  # pylint: disable=import-outside-toplevel
  ref = np.load(os.path.join(out, "reference.npz"))
  original = UNet2DModel.from_pretrained(os.path.join(out, "ddpm-cifar10-32-random")).eval()
  exported = UNet2DModel.from_pretrained(os.path.join(out, "exported")).eval()
  a, b = original.state_dict(), exported.state_dict()
  same = set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
  x = torch.from_numpy(ref["x"]).permute(0, 3, 1, 2).contiguous()   # NCHW, as in _make
  t = torch.from_numpy(ref["t"]).long()
  with torch.no_grad():
    eps = exported(x, t).sample.permute(0, 2, 3, 1).numpy()
    again = original(x, t).sample.permute(0, 2, 3, 1).numpy()
  print(json.dumps({"tensors_identical": bool(same),
                    "eps_max_abs_diff": float(np.abs(eps - ref["eps"]).max()),
                    "eps_vs_reloaded_original": float(np.abs(eps - again).max())}))


# ---- the project side ------------------------------------------------------------------


def _cli(*args) -> float:
  start = time.time()
  res = subprocess.run([sys.executable, "-m", "diffusion.pretrained", *args], cwd=REPO,
                       capture_output=True, text=True)
  if res.returncode:
    sys.exit(f"failed: {' '.join(args)}\n{res.stderr[-3000:]}")
  return time.time() - start


def _eps_of_run(workdir, ref):
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from diffusion import families  # pylint: disable=import-outside-toplevel
  from diffusion.config import checks  # pylint: disable=import-outside-toplevel
  from diffusion.io.workdir import (  # pylint: disable=import-outside-toplevel
      load_config, restore_ema_params)
  cfg = checks.validate(load_config(workdir))
  family = families.make_family(cfg)
  params, _ = restore_ema_params(workdir, family)
  eps = np.asarray(family.eps_fn(params)(jnp.asarray(ref["x"]), jnp.asarray(ref["t"])))
  return eps, params


def main(argv) -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("--diffusers_python", default="/tmp/venv-diffusers/bin/python")
  parser.add_argument("--workdir", default="/tmp/pretrained_full_size")
  parser.add_argument("--stage", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.stage == "make":
    return _make(args.workdir) or 0
  if args.stage == "check":
    return _check(args.workdir) or 0

  sys.path.insert(0, REPO)
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  shutil.rmtree(args.workdir, ignore_errors=True)
  os.makedirs(args.workdir)
  here = os.path.abspath(__file__)
  made = subprocess.run([args.diffusers_python, here, "--stage=make", f"--workdir={args.workdir}"],
                        capture_output=True, text=True)
  if made.returncode:
    sys.exit(made.stderr[-3000:])
  num = json.loads(made.stdout.strip().splitlines()[-1])["num_params"]
  ref = np.load(os.path.join(args.workdir, "reference.npz"))
  w = lambda *p: os.path.join(args.workdir, *p)  # noqa: E731
  seconds_st = _cli("import", w("ddpm-cifar10-32-random"), f"--workdir={w('run')}")
  seconds_bin = _cli("import", w("ddpm-cifar10-32-random-oldnames-bin"), f"--workdir={w('run_bin')}")
  eps, params = _eps_of_run(w("run"), ref)
  eps_bin, params_bin = _eps_of_run(w("run_bin"), ref)
  same_bin = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                 zip(jax.tree.leaves(params), jax.tree.leaves(params_bin)))
  seconds_export = _cli("export", f"--workdir={w('run')}", f"--out={w('exported')}")
  checked = subprocess.run([args.diffusers_python, here, "--stage=check",
                            f"--workdir={args.workdir}"], capture_output=True, text=True)
  if checked.returncode:
    sys.exit(checked.stderr[-3000:])
  back = json.loads(checked.stdout.strip().splitlines()[-1])
  tf_line, tf_ok = "TF checkpoint: skipped (no TensorFlow)", True
  made_tf = subprocess.run([sys.executable, os.path.join(REPO, "tests", "fixtures",
                                                         "make_ddpm_tf_fixture.py"),
                            w("diffusion_cifar10_model"), "--step=790000",
                            f"--weights={w('ddpm-cifar10-32-random')}"],
                           capture_output=True, text=True)
  if made_tf.returncode == 0:
    seconds_tf = _cli("import", w("diffusion_cifar10_model"), f"--workdir={w('run_tf')}")
    eps_tf, _ = _eps_of_run(w("run_tf"), ref)
    tf_diff = float(np.abs(eps_tf - ref["eps"]).max())
    tf_ok = tf_diff < 1e-4
    tf_line = (f"TF checkpoint written by TensorFlow (EMA shadows): import {seconds_tf:.1f} s, "
               f"eps vs diffusers: max |diff| {tf_diff:.3g}")
  elif "No module named 'tensorflow'" not in made_tf.stderr:
    sys.exit(made_tf.stderr[-3000:])
  diff = float(np.abs(eps - ref["eps"]).max())
  rel = float(np.abs(eps - ref["eps"]).max() / np.abs(ref["eps"]).max())
  print(f"diffusers UNet2DModel, google/ddpm-cifar10-32's config: {num:,} parameters; ours: "
        f"{sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params)):,}")
  print(f"import (safetensors, to_q names): {seconds_st:.1f} s; (torch pickle, query names): "
        f"{seconds_bin:.1f} s; same parameters: {same_bin}")
  print(f"eps vs diffusers (4 inputs, t = 0, 10, 500, 999): max |diff| {diff:.3g} "
        f"(max |eps| {np.abs(ref['eps']).max():.3g}, relative {rel:.3g}); pickle import: "
        f"{float(np.abs(eps_bin - ref['eps']).max()):.3g}")
  print(f"export: {seconds_export:.1f} s; diffusers loads it: tensors bit-identical to the "
        f"original: {back['tensors_identical']}, its eps vs the original's: max |diff| "
        f"{back['eps_max_abs_diff']:.3g} (vs the original reloaded the same way: "
        f"{back['eps_vs_reloaded_original']:.3g})")
  print(tf_line)
  ok = tf_ok and diff < 1e-4 and same_bin and back["tensors_identical"] and \
      back["eps_vs_reloaded_original"] == 0.0
  print("OK" if ok else "FAILED")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
