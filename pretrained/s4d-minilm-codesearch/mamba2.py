"""The selective mixer: a bidirectional Mamba-2 (SSD) scan, both directions as one call.

Recurrence per head h (scalar decay), position t, state h_t of shape (P, N):
    h_t = exp(dt_t * A) * h_{t-1} + (dt_t * x_t) B_t^T ;   y_t = h_t C_t + D * x_t
The two directions have separate parameters; their heads are concatenated (2H heads, two B/C groups) so
one scan serves both. On CUDA with mamba-ssm importable the scan is mamba-ssm's Triton kernel
`mamba_chunk_scan_combined`; otherwise the pure-torch chunked scan below. The choice is made per call.
With `use_mamba_kernels=True` and Triton's interpreter switched on (`TRITON_INTERPRET=1`), CPU tensors go
through the kernel too (slowly, in Python): that is how the kernel path is tested without a GPU.
"""

from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .configuration_mambacode import MambaCodeConfig

logger = logging.getLogger(__name__)

_KERNEL_STATE = {"loaded": False, "fn": None, "error": None}


def mamba_chunk_scan_kernel():
    """mamba-ssm's Triton SSD kernel, or None. Import failures are caught and logged once."""
    if not _KERNEL_STATE["loaded"]:
        _KERNEL_STATE["loaded"] = True
        try:
            from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

            _KERNEL_STATE["fn"] = mamba_chunk_scan_combined
        except Exception as exc:  # ImportError, missing CUDA/Triton, ABI errors: all mean "no kernel"
            _KERNEL_STATE["error"] = f"{type(exc).__name__}: {exc}"
            logger.info("mamba-ssm kernels unavailable, using the pure-torch SSD scan (%s)", _KERNEL_STATE["error"])
    return _KERNEL_STATE["fn"]


def triton_interpreter_on() -> bool:
    """Whether `TRITON_INTERPRET` switches Triton's interpreter on (the values Triton itself accepts)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on", "y")


def ssd_segment_sum(a: torch.Tensor) -> torch.Tensor:
    """out[..., i, j] = sum_{k=j+1..i} a[..., k] for i >= j, and -inf above the diagonal.

    The log-decay between positions j and i of the SSD scan. It follows `segsum` in mamba-ssm's
    `mamba_ssm/modules/ssd_minimal.py` (the stable variant): summed directly as a masked cumulative sum,
    not as a difference of prefix sums, to stay exact in float32.
    """
    T = a.shape[-1]
    strict = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)
    x = a.unsqueeze(-1).expand(*a.shape, T).masked_fill(~strict, 0.0)
    s = x.cumsum(dim=-2)
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device))
    return s.masked_fill(~keep, float("-inf"))


def ssd_chunked_scan(x, dt, A, B, C, chunk_size: int) -> torch.Tensor:
    """Pure-torch chunked SSD scan (no D term): the four steps of `ssd_minimal_discrete` in mamba-ssm's
    `mamba_ssm/modules/ssd_minimal.py`, with the heads grouped over B/C groups and any length l.

    x: (b, l, h, p); dt: (b, l, h) (already positive); A: (h,) (negative);
    B, C: (b, l, g, n) with heads split evenly over the g groups. Returns y: (b, l, h, p) in float32.
    Any l works: the tail is padded with dt = 0 (identity decay, no input), which the causal scan ignores.
    """
    b, l, h, p = x.shape
    g = B.shape[2]
    Q = chunk_size
    pad = (-l) % Q
    x, dt, B, C = (t.float() for t in (x, dt, B, C))
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    c = x.shape[1] // Q

    def per_head(t: torch.Tensor, dim: int) -> torch.Tensor:
        """Repeat each of the g groups at `dim` for its h / g consecutive heads. An expand, not an index:
        the backward of an index is a serial index_put on CPU (12% of a step), this one a plain sum."""
        shape = list(t.shape)
        shape.insert(dim + 1, h // g)
        return t.unsqueeze(dim + 1).expand(shape).flatten(dim, dim + 1)

    xd = (x * dt.unsqueeze(-1)).view(b, c, Q, h, p)
    a = (dt * A.float()).view(b, c, Q, h).permute(0, 3, 1, 2)  # (b, h, c, Q)
    Bc = B.view(b, c, Q, g, -1)
    Cc = C.view(b, c, Q, g, -1)

    # 1. within each chunk: y_t = sum_{s<=t} (C_t . B_s) exp(sum_{k=s+1..t} a_k) xd_s
    CB = per_head(torch.einsum("bclgn,bcsgn->bgcls", Cc, Bc), 1)  # (b, h, c, Q, Q)
    y = torch.einsum("bhcls,bcshp->bclhp", CB * torch.exp(ssd_segment_sum(a)), xd)

    # 2. state left at the end of each chunk by that chunk's inputs
    tail = a.flip(-1).cumsum(-1).flip(-1) - a  # sum_{k=s+1..Q-1} a_k
    Bh = per_head(Bc, 3)  # (b, c, Q, h, n)
    states = torch.einsum("bcshn,bhcs,bcshp->bchpn", Bh, torch.exp(tail), xd)

    # 3. carry states across chunks (zero initial state), then 4. read them out inside each chunk
    chunk_decay = F.pad(a.sum(-1), (1, 0))  # (b, h, c+1)
    states = torch.cat([torch.zeros_like(states[:, :1]), states], dim=1)
    carried = torch.einsum("bhzc,bchpn->bzhpn", torch.exp(ssd_segment_sum(chunk_decay)), states)[:, :-1]
    Ch = per_head(Cc, 3)
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", Ch, carried, torch.exp(a.cumsum(-1)))
    return y.reshape(b, c * Q, h, p)[:, :l]


class BiMamba2Mixer(nn.Module):
    """Bidirectional selective SSD mixer: `forward(u_f, u_b)`, each (B, L, d) in the original order.

    Per direction: one `nn.Linear` producing B (N), C (N) and dt (H) from the input (so LoRA can adapt
    it), and per-head dt_bias, A_log, D. x is the input itself, split into H = d / P heads. Both directions
    run as one scan over 2H heads, the backward direction on its reversed input.
    """

    def __init__(self, config: MambaCodeConfig, layer_idx: int | None = None):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.state_size = config.state_size
        self.head_dim = config.mamba_head_dim
        self.num_heads = config.hidden_size // config.mamba_head_dim
        self.chunk_size = config.mamba_chunk_size
        self.dt_min, self.dt_max = config.mamba_dt_min, config.mamba_dt_max
        self.use_kernels = config.use_mamba_kernels
        self.layer_idx = layer_idx
        out = 2 * self.state_size + self.num_heads
        self.proj_fwd = nn.Linear(self.hidden_size, out)
        self.proj_bwd = nn.Linear(self.hidden_size, out)
        self.dt_bias = nn.Parameter(torch.empty(2, self.num_heads))
        self.A_log = nn.Parameter(torch.empty(2, self.num_heads))
        self.D = nn.Parameter(torch.empty(2, self.num_heads))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mamba-2 initialisation: A in -[1, 16], softplus(dt_bias) log-uniform in [dt_min, dt_max], D = 1."""
        dev = self.A_log.device
        if dev.type == "meta":
            return
        H = self.num_heads
        init.copy_(self.A_log, torch.log(torch.linspace(1.0, 16.0, H, device=dev)).expand(2, H))
        dt = torch.exp(torch.rand(2, H, device=dev) * (math.log(self.dt_max) - math.log(self.dt_min))
                       + math.log(self.dt_min))
        init.copy_(self.dt_bias, dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        init.ones_(self.D)

    def selective_parameters(self, u_f: torch.Tensor, u_b: torch.Tensor) -> dict:
        """The scan's inputs for (u_f, u_b), each (B, L, d) in the original order.

        Returned in scan order (the backward direction's positions reversed): x (B, L, 2H, P), dt (B, L, 2H)
        after softplus, A (2H,), B and C (B, L, 2, N) (group 0 = forward, 1 = backward; heads [0, H) are
        forward, [H, 2H) backward). Spectral analysis reads the effective kernels from these.
        """
        batch, length, d = u_f.shape
        N, H = self.state_size, self.num_heads
        u = torch.stack([u_f, u_b.flip(1)], dim=2)  # (B, L, 2, d), scan order
        proj = torch.stack([self.proj_fwd(u[:, :, 0]), self.proj_bwd(u[:, :, 1])], dim=2).float()
        Bm, Cm, dt = proj.split([N, N, H], dim=-1)
        dt = F.softplus(dt + self.dt_bias.float())  # (B, L, 2, H)
        return {
            "x": u.reshape(batch, length, 2 * H, self.head_dim),
            "dt": dt.reshape(batch, length, 2 * H),
            "A": -torch.exp(self.A_log.float()).reshape(2 * H),
            "B": Bm.contiguous(),
            "C": Cm.contiguous(),
        }

    def scan(self, x, dt, A, B, C) -> torch.Tensor:
        """Dispatch to the Triton kernel (CUDA + mamba-ssm) or the pure-torch chunked scan.

        CPU tensors take the kernel only when it is required (`use_mamba_kernels=True`) and Triton's
        interpreter is on; "auto" never picks the interpreter, which is far slower than the torch scan.
        """
        kernel = None
        wanted = self.use_kernels in ("auto", True) and (
            x.is_cuda or (self.use_kernels is True and x.device.type == "cpu" and triton_interpreter_on()))
        if wanted:
            kernel = mamba_chunk_scan_kernel()
            if kernel is None and self.use_kernels is True:
                raise RuntimeError(
                    "use_mamba_kernels=True but mamba-ssm's Triton kernels could not be imported "
                    f"({_KERNEL_STATE['error']}); install the [cuda] extra or set use_mamba_kernels='auto'."
                )
        if kernel is not None:
            return kernel(x.contiguous(), dt.contiguous(), A, B, C, chunk_size=self.chunk_size).float()
        with torch.autocast(x.device.type, enabled=False):  # the scan's sums stay float32 under autocast
            return ssd_chunked_scan(x, dt, A, B, C, self.chunk_size)

    def forward(self, u_f: torch.Tensor, u_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u_f, u_b) -> (y_f, y_b), all (B, L, d) in the original order: one scan over 2H heads."""
        batch, length, d = u_f.shape
        p = self.selective_parameters(u_f, u_b)
        y = self.scan(p["x"], p["dt"], p["A"], p["B"], p["C"])
        y = y + p["x"].float() * self.D.float().reshape(2 * self.num_heads, 1)
        y = y.reshape(batch, length, 2, d).to(u_f.dtype)
        return y[:, :, 0], y[:, :, 1].flip(1)


__all__ = ["BiMamba2Mixer", "ssd_chunked_scan", "ssd_segment_sum", "mamba_chunk_scan_kernel", "triton_interpreter_on"]
