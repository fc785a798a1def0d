"""A sweep point's outcome in the ledger, the same for every mode: runner.py's sequential
and vmap loops and ray_mode.py's tasks all record a finished point here."""

from diffusion.errors import ConfigError
from diffusion.sweeps.ledger import Ledger
from diffusion.sweeps.summary import point_metrics


def one_line(e: BaseException) -> str:
  """An exception as the one line a ledger records."""
  text = (str(e).strip().splitlines() or [""])[0]
  return text if isinstance(e, ConfigError) else f"{type(e).__name__}: {text}"


def finish(ledger: Ledger, name: str, result, num_steps: int) -> bool:
  """Records a point's outcome; False when it stopped early (a signal) and must resume."""
  workdir = ledger.point(name)["workdir"]
  if isinstance(result, BaseException):
    ledger.set(name, "failed", one_line(result))
    print(f"sweep: {name} failed: {one_line(result)}", flush=True)
    return True
  final, best = point_metrics(workdir)
  if result.get("step", 0) < num_steps:
    ledger.set(name, "running", final=final, best=best)
    return False
  ledger.set(name, "done", final=final, best=best)
  return not result.get("interrupted")   # a signal at the last step stops the sweep too
