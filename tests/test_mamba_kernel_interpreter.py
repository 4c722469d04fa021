"""mamba-ssm's Triton SSD kernel, called by our mixer on CPU tensors through Triton's interpreter.

The GPU path (`use_mamba_kernels`) is checked here without a GPU: `BiMamba2Mixer.scan` sends CPU tensors to
`mamba_chunk_scan_combined` when `use_mamba_kernels=True` and `TRITON_INTERPRET=1`, and the results are
compared with the pure-torch scan (itself checked against a float64 loop in test_modeling_mixers.py).

mamba-ssm builds no wheel without CUDA, so `.ci/run` downloads its source distribution and names it in
`MAMBA_SSM_SDIST` (the .tar.gz, or a folder holding `mamba_ssm/`); without it an installed mamba-ssm is
used, and without either the tests skip. Test-only shims, none of which copy or change mamba-ssm's code:
- `mamba_ssm/__init__.py` imports the CUDA extension: a bare parent package whose `__path__` points at the
  sources lets `mamba_ssm.ops.triton` import without running it;
- the kernels enter `torch.cuda.device(t.device.index)` and read `torch.cuda.get_device_properties(...)`:
  a no-op context for CPU tensors (index None) and a fixed multiprocessor count;
- Triton's autotuner times its configurations on a GPU: it keeps the first configuration instead.
`triton.jit` reads `TRITON_INTERPRET` when the kernels are defined, so it is set before they are imported.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tarfile
import types
from pathlib import Path

import pytest
import torch

from mambacode import MambaCodeModel
from mambacode.modeling import mamba2
from mambacode.modeling.mamba2 import BiMamba2Mixer

SDIST_ENV = "MAMBA_SSM_SDIST"
LENGTHS = (64, 40)  # one full row and one ragged, right-padded row (40 is not a multiple of the chunk)


def _mamba_ssm_sources(tmp_dir: Path) -> Path | None:
    """The `mamba_ssm` source folder: from $MAMBA_SSM_SDIST (archive or folder), else an installed copy."""
    given = os.environ.get(SDIST_ENV)
    if not given:
        spec = importlib.util.find_spec("mamba_ssm")  # locates an installed copy without importing it
        return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    path = Path(given)
    if not path.exists():
        pytest.fail(f"{SDIST_ENV}={given}: no such file or folder (expected mamba-ssm's source distribution)")
    if path.is_file():
        with tarfile.open(path) as archive:
            archive.extractall(tmp_dir, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        path = tmp_dir
    found = sorted(p.parents[2] for p in path.glob("**/mamba_ssm/ops/triton/ssd_combined.py"))
    if not found:
        pytest.fail(f"{SDIST_ENV}={given}: no mamba_ssm/ops/triton/ssd_combined.py inside (expected mamba-ssm's "
                    "source distribution, e.g. from `pip download --no-binary :all: mamba-ssm`)")
    return found[0]


def _pop_modules(name: str) -> dict:
    """Take the module `name` and its submodules out of sys.modules; returns them."""
    return {k: sys.modules.pop(k) for k in [k for k in sys.modules if k == name or k.startswith(name + ".")]}


@pytest.fixture(scope="module")
def kernel_calls(tmp_path_factory):
    """Load mamba-ssm's Triton SSD kernels for the interpreter; yields the list of the kernel's calls.

    `triton.jit` picks interpreter or compiler when a function is defined: mamba-ssm's kernels are
    imported afresh under TRITON_INTERPRET=1, while triton's own library (`tl.cumsum`, ...) keeps the
    compiled-mode functions it was imported with; those are interpreted when a kernel calls them. The
    `mamba_ssm` modules found before are put back afterwards, so a GPU test later in the run is unaffected.
    """
    sources = _mamba_ssm_sources(tmp_path_factory.mktemp("mamba_ssm"))
    if sources is None:
        pytest.skip(f"mamba-ssm's sources not found: set {SDIST_ENV} to its source distribution (as .ci/run does)")
    try:
        from triton.runtime.autotuner import Autotuner
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction
    except ImportError as exc:
        pytest.fail(f"mamba-ssm's sources are at {sources} but triton does not import ({exc}): `pip install triton`")
    saved = _pop_modules("mamba_ssm")
    calls = []
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TRITON_INTERPRET", "1")
            mp.setattr(JITFunction, "__call__", lambda self, *a, **k: InterpretedFunction(self.fn)(*a, **k))
            real_device, real_prune = torch.cuda.device, Autotuner.prune_configs
            mp.setattr(torch.cuda, "device",
                       lambda index: contextlib.nullcontext() if index is None else real_device(index))
            mp.setattr(torch.cuda, "get_device_properties",
                       lambda device=None: types.SimpleNamespace(multi_processor_count=4, name="triton-interpreter"))
            mp.setattr(Autotuner, "prune_configs", lambda self, kwargs: real_prune(self, kwargs)[:1])
            package = types.ModuleType("mamba_ssm")
            package.__path__ = [str(sources)]
            sys.modules["mamba_ssm"] = package
            combined = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
            kernel = combined.mamba_chunk_scan_combined

            def counted(*args, **kwargs):
                calls.append(tuple(args[0].shape))
                return kernel(*args, **kwargs)

            mp.setattr(combined, "mamba_chunk_scan_combined", counted)
            # the mixer imports the kernel afresh here, and forgets it afterwards
            mp.setattr(mamba2, "_KERNEL_STATE", {"loaded": False, "fn": None, "error": None})
            yield calls
    finally:
        _pop_modules("mamba_ssm")
        sys.modules.update(saved)


def _config(tiny, **overrides):
    fields = dict(hidden_size=16, mamba_head_dim=8, state_size=8, mamba_chunk_size=16, use_mamba_kernels=True)
    return tiny("mamba2", **{**fields, **overrides})


def _padding_mask(batch: int = 2, length: int = max(LENGTHS)) -> torch.Tensor:
    return (torch.arange(length)[None, :] < torch.tensor(LENGTHS[:batch])[:, None]).float()


def _distinct_directions(module: torch.nn.Module) -> None:
    """Random parameters, different per direction, so a swapped or missing direction shows."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))


def _assert_close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    """rtol 1e-4, atol 1e-5 of the reference's largest magnitude (float32 sums in a different order)."""
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()) + 1e-12,
                               msg=lambda m: f"{what}: kernel path vs torch scan: {m}")


def test_kernel_path_matches_torch_scan_forward_and_gradients(kernel_calls, tiny):
    """Both directions, a ragged padded batch: outputs and gradients w.r.t. inputs and every parameter."""
    mixer = BiMamba2Mixer(_config(tiny))
    _distinct_directions(mixer)
    mask = _padding_mask()[..., None]
    u_f, u_b = torch.randn(2, max(LENGTHS), 16) * mask, torch.randn(2, max(LENGTHS), 16) * mask
    w_f, w_b = torch.randn_like(u_f) * mask, torch.randn_like(u_b) * mask  # loss over real positions only
    names = ["u_f", "u_b"] + [n for n, _ in mixer.named_parameters()]

    def run():
        inputs = [u_f.clone().requires_grad_(), u_b.clone().requires_grad_()]
        y_f, y_b = mixer(*inputs)
        grads = torch.autograd.grad((y_f * w_f).sum() + (y_b * w_b).sum(), inputs + list(mixer.parameters()))
        return y_f.detach(), y_b.detach(), grads

    before = len(kernel_calls)
    got = run()
    assert len(kernel_calls) == before + 1, "the mixer did not call mamba-ssm's kernel"
    assert kernel_calls[-1] == (2, max(LENGTHS), 2 * mixer.num_heads, mixer.head_dim)  # both directions, one call
    mixer.use_kernels = False
    ref = run()
    assert len(kernel_calls) == before + 1
    _assert_close(got[0], ref[0], "forward direction output")
    _assert_close(got[1], ref[1], "backward direction output")
    for name, g, r in zip(names, got[2], ref[2]):
        assert r.abs().max() > 0, f"gradient of {name} is zero: the test could not tell a wrong kernel"
        _assert_close(g, r, f"gradient of {name}")


def test_kernel_path_in_the_model_ignores_padding(kernel_calls, tiny):
    """The model's masking + the kernel: a padded row equals the same tokens alone, and the torch scan."""
    model = MambaCodeModel(_config(tiny, num_hidden_layers=1)).eval()
    _distinct_directions(model)
    mask = _padding_mask().long()
    ids = torch.randint(5, 100, mask.shape) * mask + model.config.pad_token_id * (1 - mask)
    short = LENGTHS[1]
    before = len(kernel_calls)
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask).last_hidden_state
        alone = model(input_ids=ids[1:, :short], attention_mask=mask[1:, :short]).last_hidden_state
        assert len(kernel_calls) == before + 2, "the model did not call mamba-ssm's kernel"
        for module in model.modules():
            if isinstance(module, BiMamba2Mixer):
                module.use_kernels = False
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert len(kernel_calls) == before + 2
    torch.testing.assert_close(padded[1, :short], alone[0], rtol=1e-5, atol=1e-5)
    _assert_close(padded[0], ref[0], "full row")
    _assert_close(padded[1, :short], ref[1, :short], "ragged row")


def test_cpu_default_stays_on_the_torch_scan(kernel_calls, tiny, monkeypatch):
    """The kernel is importable here, yet "auto", False, or True without the interpreter keep the torch scan."""
    u = torch.randn(1, 20, 16)
    before = len(kernel_calls)
    for choice in ("auto", False):
        BiMamba2Mixer(_config(tiny, use_mamba_kernels=choice))(u, u)
    monkeypatch.delenv("TRITON_INTERPRET")
    BiMamba2Mixer(_config(tiny))(u, u)
    assert len(kernel_calls) == before


def test_required_kernel_on_the_interpreter_fails_clearly_when_missing(tiny, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(mamba2, "_KERNEL_STATE", {"loaded": True, "fn": None, "error": "ImportError: no mamba_ssm"})
    mixer = BiMamba2Mixer(_config(tiny))
    with pytest.raises(RuntimeError, match="use_mamba_kernels=True.*no mamba_ssm"):
        mixer(torch.randn(1, 8, 16), torch.randn(1, 8, 16))
