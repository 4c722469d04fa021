"""The LTI mixer: diagonal S4D kernels applied as one batched FFT convolution for both directions.

Kernel (PAPER.md section 2), per kernel g with N/2 complex modes n:
    dt = exp(log_step);  dtA = dt * A;  Ct = C * (exp(dtA) - 1) / A          (zero-order hold, B = 1)
    K[l] = 2 * Re( sum_n Ct_n * exp(dtA_n * l) ),   l = 0..L-1
The factor 2 accounts for the conjugate half of the N-dimensional state. The skip term D is separate.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init


class S4DKernel(nn.Module):
    """`num_kernels` independent S4D kernels per direction, both directions stacked in one tensor.

    Parameters have a leading axis of size 2 (0 = forward, 1 = backward) and one of size G.
    """

    def __init__(self, num_kernels: int, state_size: int, dt_min: float = 0.01, dt_max: float = 1.0):
        super().__init__()
        self.num_kernels = num_kernels
        self.num_modes = state_size // 2
        self.dt_min, self.dt_max = dt_min, dt_max
        shape = (2, num_kernels)
        self.log_step = nn.Parameter(torch.empty(shape))
        self.A_real = nn.Parameter(torch.empty(shape + (self.num_modes,)))
        self.A_imag = nn.Parameter(torch.empty(shape + (self.num_modes,)))
        self.C = nn.Parameter(torch.empty(shape + (self.num_modes, 2)))  # complex as (re, im)
        self.D = nn.Parameter(torch.empty(shape))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """S4D-Lin initialisation: A = -0.5 + i*pi*n, log-uniform step, complex normal C (E|C|^2 = 1)."""
        dev = self.log_step.device
        if dev.type == "meta":
            return
        shape = self.log_step.shape
        u = torch.rand(shape, device=dev)
        init.copy_(self.log_step, math.log(self.dt_min) + u * (math.log(self.dt_max) - math.log(self.dt_min)))
        init.constant_(self.A_real, -0.5)
        n = torch.arange(self.num_modes, device=dev, dtype=torch.float32)
        init.copy_(self.A_imag, (math.pi * n).expand_as(self.A_imag))
        init.copy_(self.C, torch.randn(self.C.shape, device=dev) * math.sqrt(0.5))
        init.ones_(self.D)

    def materialize(self, length: int) -> torch.Tensor:
        """The real kernels K, shape (2, G, length), float32 (D excluded)."""
        A = torch.complex(self.A_real.float().clamp(max=-1e-4), self.A_imag.float())  # (2, G, M)
        dtA = torch.exp(self.log_step.float()).unsqueeze(-1) * A
        C = torch.view_as_complex(self.C.float().contiguous())
        Ct = C * torch.expm1(dtA) / A
        lags = torch.arange(length, device=A.device, dtype=torch.float32)
        vander = torch.exp(dtA.unsqueeze(-1) * lags)  # (2, G, M, L)
        return 2.0 * torch.einsum("dgm,dgml->dgl", Ct, vander).real


def fft_size(length: int) -> int:
    """FFT length for a linear (non-circular) convolution of two length-L signals: a power of two >= 2L."""
    return 1 << (2 * length - 1).bit_length()


class S4DMixer(nn.Module):
    """Applies both directions' S4D kernels to u of shape (B, L, 2, d) (direction axis in scan order).

    One rfft of the stacked input, one rfft of the (2, G, L) kernels per call, one irfft: both directions
    and every channel group in a single batched FFT convolution.
    """

    def __init__(self, hidden_size: int, num_kernels: int, state_size: int, dt_min: float, dt_max: float):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_kernels = num_kernels
        self.kernel = S4DKernel(num_kernels, state_size, dt_min, dt_max)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        batch, length, _, d = u.shape
        G = self.num_kernels
        n = fft_size(length)
        k = self.kernel.materialize(length)  # (2, G, L)
        k_f = torch.fft.rfft(k, n=n)  # (2, G, F)
        u32 = u.float()
        u_f = torch.fft.rfft(u32, n=n, dim=1)  # (B, F, 2, d)
        freq = u_f.shape[1]
        y_f = u_f.view(batch, freq, 2, G, d // G) * k_f.permute(2, 0, 1).unsqueeze(-1)
        y = torch.fft.irfft(y_f.view(batch, freq, 2, d), n=n, dim=1)[:, :length]
        D = self.kernel.D.float().repeat_interleave(d // G, dim=1)  # (2, d)
        y = y + u32 * D
        return y.to(u.dtype)


__all__ = ["S4DKernel", "S4DMixer", "fft_size"]
