"""diffusion/reproduce/common.py: a kept evaluation is reused only for the same protocol."""


def test_kept_evaluations_are_reused_only_for_the_same_protocol(tmp_path):
  """A rerun reads a kept evaluation back; another sampler or step measures afresh."""
  from diffusion.reproduce import common  # pylint: disable=import-outside-toplevel
  config = common.load_config_file("configs/ddpm/quickstart.py")
  calls = []

  def measure():
    calls.append(1)
    return {"eval/cfid": float(len(calls))}

  def once(cfg, step=100):
    return common.measured_once(str(tmp_path), "q", cfg, step, 0, measure)

  assert once(config) == {"eval/cfid": 1.0}
  assert once(config) == {"eval/cfid": 1.0} and len(calls) == 1     # read back
  ddim10 = common.with_sampling(config, num_steps=10)
  assert once(ddim10) == {"eval/cfid": 2.0}                          # another protocol
  assert once(config, step=200) == {"eval/cfid": 3.0}                # another checkpoint
  assert len(list(tmp_path.glob("q_*.json"))) == 3
