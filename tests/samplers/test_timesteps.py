"""diffusion/samplers/timesteps.py: DDIM's τ and Improved DDPM's respacing, against
improved-diffusion's rule written out again."""

from diffusion import samplers


# ---- DDIM's τ -------------------------------------------------------------------------------


def test_ddim_timestep_selection():
  for S, last in [(10, 900), (20, 950), (50, 980), (100, 990)]:
    tau = samplers.ddim_timesteps(1000, S, "uniform")
    assert len(tau) == S and tau[0] == 0 and tau[-1] == last
  quad = samplers.ddim_timesteps(1000, 50, "quad")
  assert len(quad) == 50 and quad[0] == 0 and quad[-1] == 800
  assert list(samplers.ddim_timesteps(1000, 0, "uniform")) == list(range(1000))


# ---- Improved DDPM's respacing --------------------------------------------------------------


def test_space_timesteps_matches_improved_diffusion():
  """docs/checkable_values.md item 20."""
  s = samplers.space_timesteps(4000, "100")
  assert len(s) == 100 and list(s[:3]) == [0, 40, 81] and list(s[-3:]) == [3918, 3959, 3999]
  assert list(samplers.space_timesteps(1000, "ddim50")) == list(range(0, 1000, 20))
  s = samplers.space_timesteps(1000, "50")
  assert len(s) == 50 and list(s[:3]) == [0, 20, 41] and list(s[-3:]) == [958, 979, 999]


def _improved_diffusion_space_timesteps(num_timesteps, section_counts):
  """improved-diffusion respace.py's rule, written out again from its description."""
  size_per = num_timesteps // len(section_counts)
  extra = num_timesteps % len(section_counts)
  start_idx, all_steps = 0, []
  for i, section_count in enumerate(section_counts):
    size = size_per + (1 if i < extra else 0)
    frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
    cur_idx = 0.0
    for _ in range(section_count):
      all_steps.append(start_idx + round(cur_idx))
      cur_idx += frac_stride
    start_idx += size
  return sorted(set(all_steps))


def test_space_timesteps_matches_improved_diffusion_for_every_count():
  for count in range(1, 1001):
    assert list(samplers.space_timesteps(1000, str(count))) == \
        _improved_diffusion_space_timesteps(1000, [count]), count
  kept = samplers.space_timesteps(1000, "21")   # the .5 tie: 10 x 49.95 accumulates
  assert 499 in kept and 500 not in kept        # to just under 499.5; round(10 * 49.95) gives 500
  for counts in ("10,20,30", "7,3", "100,1"):
    assert list(samplers.space_timesteps(1000, counts)) == _improved_diffusion_space_timesteps(
        1000, [int(c) for c in counts.split(",")])
