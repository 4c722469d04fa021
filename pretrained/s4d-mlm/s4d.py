"""The LTI mixer: diagonal S4D kernels applied as one batched FFT convolution for both directions.

Kernel (PAPER.md section 2), per kernel g with N/2 complex modes n:
    dt = exp(log_step);  dtA = dt * A;  Ct = C * (exp(dtA) - 1) / A          (zero-order hold, B = 1)
    K[l] = 2 * Re( sum_n Ct_n * exp(dtA_n * l) ),   l = 0..L-1
The factor 2 accounts for the conjugate half of the N-dimensional state. The skip term D is separate.
With `config.s4d_conjugate_pairs=False` (converted BiGS checkpoints) the state is N complex modes and the
kernel is Re(sum ...) without the factor 2, as BiGS computes it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init

from .configuration_mambacode import MambaCodeConfig


class S4DKernel(nn.Module):
    """`config.num_kernels` independent S4D kernels per direction, both directions stacked in one tensor.

    Parameters have a leading axis of size 2 (0 = forward, 1 = backward) and one of size G.
    """

    def __init__(self, config: MambaCodeConfig):
        super().__init__()
        self.num_kernels = config.num_kernels
        self.conjugate_pairs = config.s4d_conjugate_pairs
        self.num_modes = config.state_size // 2 if self.conjugate_pairs else config.state_size
        self.dt_min, self.dt_max = config.ssm_dt_min, config.ssm_dt_max
        shape = (2, self.num_kernels)
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
        """The real kernels K, shape (2, G, length), float32 (float64 for a float64 model; D excluded)."""
        return s4d_kernel(self.log_step, self.A_real, self.A_imag, self.C, length, self.conjugate_pairs)

    def modes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(dtA, c): complex (2, G, M) with K[l] = Re(sum_m c_m exp(dtA_m l)); c = 2 Ct (conjugate pairs) or Ct."""
        dtA, Ct = s4d_modes(self.log_step, self.A_real, self.A_imag, self.C)
        return dtA, (2.0 * Ct if self.conjugate_pairs else Ct)


def s4d_modes(log_step, A_real, A_imag, C) -> tuple[torch.Tensor, torch.Tensor]:
    """The discretised modes (dtA, Ct), complex (..., M), complex128 if the parameters are float64, else complex64."""
    dtype = torch.float64 if log_step.dtype == torch.float64 else torch.float32
    A = torch.complex(A_real.to(dtype).clamp(max=-1e-4), A_imag.to(dtype))  # (..., M)
    dtA = torch.exp(log_step.to(dtype)).unsqueeze(-1) * A
    Ct = torch.view_as_complex(C.to(dtype).contiguous()) * torch.expm1(dtA) / A
    return dtA, Ct


def s4d_kernel(log_step, A_real, A_imag, C, length: int, conjugate_pairs: bool = True) -> torch.Tensor:
    """K[..., l] = 2 Re(sum_m Ct_m exp(dtA_m l)) for l < length, float64 if the parameters are, else float32.

    `conjugate_pairs=False` drops the factor 2 (the modes are the whole state, as in BiGS).

    The Vandermonde matrix exp(dtA_m l) is never materialised: with l = a*T + b it factors into
    exp(dtA_m a T) * exp(dtA_m b), so the kernel is one batched complex matmul over the modes and the
    intermediates are O(M sqrt(L)) per kernel instead of O(M L) (G = hidden_size kernels stay cheap).
    """
    dtype = torch.float64 if log_step.dtype == torch.float64 else torch.float32
    dtA, Ct = s4d_modes(log_step, A_real, A_imag, C)
    T = max(1, math.isqrt(length - 1) + 1) if length > 1 else 1
    blocks = -(-length // T)
    coarse = torch.exp(dtA.unsqueeze(-1) * (torch.arange(blocks, device=dtA.device, dtype=dtype) * T))  # (..., M, a)
    fine = torch.exp(dtA.unsqueeze(-1) * torch.arange(T, device=dtA.device, dtype=dtype))  # (..., M, b)
    k = torch.matmul((Ct.unsqueeze(-1) * coarse).transpose(-1, -2), fine)  # (..., a, b)
    k = k.real.flatten(-2)[..., :length]
    return 2.0 * k if conjugate_pairs else k


def fft_size(length: int) -> int:
    """The smallest FFT length n >= 2L - 1 whose only prime factors are 2, 3 and 5.

    A linear (non-circular) convolution of two length-L signals is exact on outputs 0..L-1 for any
    n >= 2L - 1 (the circular wrap-around lands beyond L). pocketfft is fast for 5-smooth sizes, so the
    smallest such n wastes the least work: L = 300 takes n = 600 instead of the power of two 1,024.
    """
    need = max(1, 2 * length - 1)
    best = 1 << (need - 1).bit_length()  # the power of two, an upper bound
    five = 1
    while five < best:
        three = five
        while three < best:
            two = three
            while two < need:
                two *= 2
            best = min(best, two)
            three *= 3
        five *= 5
    return best


def padded_channels_first(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, L, d) -> (B, d, n) contiguous, zero beyond L, at least float32: the layout pocketfft transforms fastest.

    On CPU the transposing copy goes in blocks of 256 positions: one strided copy of a large tensor writes
    across cache lines and measured 6x slower (7.9 ms vs 1.3 ms for 2 x 4,096 x 256 floats on two cores).
    """
    batch, length, d = x.shape
    dtype = torch.promote_types(x.dtype, torch.float32)
    if x.device.type != "cpu":
        return F.pad(x.transpose(1, 2).to(dtype), (0, n - length))
    out = torch.empty((batch, d, n), dtype=dtype, device=x.device)
    for start in range(0, length, 256):
        end = min(start + 256, length)
        out[:, :, start:end].copy_(x[:, start:end].transpose(1, 2))
    out[:, :, length:].zero_()
    return out


class FFTConvolution(torch.autograd.Function):
    """y = K * u along the sequence (causal), or its anti-causal mirror, with a hand-written backward.

    u: (B, L, d) real; k: (G, L) real kernels over G contiguous channel groups. `anticausal=True` gives
    y[t] = sum_{s>=t} k[s-t] u[s], which is the causal convolution of the reversed sequence, reversed back:
    the backward direction without materialising any flipped copy. Autograd through torch.fft would pad
    to a full complex transform in backward; here backward is two real FFTs per input, and only u and k are
    saved (the spectrum of u is recomputed rather than stored: half the activation memory).
    """

    @staticmethod
    def forward(ctx, u, k, anticausal: bool):
        batch, length, d = u.shape
        G = k.shape[0]
        n = fft_size(length)
        k_f = torch.fft.rfft(k, n=n)  # (G, F)
        if anticausal:
            k_f = k_f.conj()
        u_f = torch.fft.rfft(padded_channels_first(u, n))  # (B, d, F)
        y = torch.fft.irfft(u_f.view(batch, G, d // G, -1) * k_f.unsqueeze(1), n=n)[..., :length]
        ctx.save_for_backward(u, k_f)
        ctx.meta = (length, n, G, anticausal)
        return y.reshape(batch, d, length).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad_y):
        u, k_f = ctx.saved_tensors
        length, n, G, anticausal = ctx.meta
        batch, _, d = u.shape
        g_f = torch.fft.rfft(padded_channels_first(grad_y, n)).view(batch, G, d // G, -1)
        grad_u = grad_k = None
        if ctx.needs_input_grad[0]:  # correlation with the kernel: the adjoint of the convolution
            grad_u = torch.fft.irfft(g_f * k_f.conj().unsqueeze(1), n=n)[..., :length]
            grad_u = grad_u.reshape(batch, d, length).transpose(1, 2).to(u.dtype)
        if ctx.needs_input_grad[1]:
            u_f = torch.fft.rfft(padded_channels_first(u, n)).view(batch, G, d // G, -1)
            cross = (u_f * g_f.conj()) if anticausal else (g_f * u_f.conj())
            grad_k = torch.fft.irfft(cross.sum(dim=(0, 2)), n=n)[..., :length]
        return grad_u, grad_k, None


def toeplitz(k: torch.Tensor, anticausal: bool) -> torch.Tensor:
    """The (G, L, L) Toeplitz matrices of kernels k (G, L): T[t, s] = k[t - s] for t >= s (causal), or
    T[t, s] = k[s - t] for s >= t (anti-causal); zero elsewhere."""
    length = k.shape[-1]
    zeros = k.new_zeros(k.shape[:-1] + (length - 1,))
    # windows of [k reversed, zeros] (causal) or [zeros, k] (anti-causal): Hankel rows, read bottom-up
    line = torch.cat([zeros, k] if anticausal else [k.flip(-1), zeros], dim=-1)  # (G, 2L - 1)
    hankel = line.unfold(-1, length, 1)  # (G, L, L): hankel[i, s] = line[i + s]
    return hankel.flip(-2)  # T[t, s] = line[L - 1 - t + s]


def direct_convolution(u: torch.Tensor, k: torch.Tensor, anticausal: bool) -> torch.Tensor:
    """The same convolution as `FFTConvolution` as one matmul with the (L, L) Toeplitz matrix of each kernel.

    y[t] = sum_s T[t, s] u[s] with T[t, s] = k[t - s] (causal, t >= s) or k[s - t] (anti-causal). O(L^2 d)
    work instead of O(L log L d), but it is a matmul: at short lengths it beats the FFT's memory-bound
    passes (and runs in bf16 under autocast, with float32 accumulation), see `S4DMixer.direct_max_length`.
    """
    batch, length, d = u.shape
    G = k.shape[0]
    T = toeplitz(k, anticausal)  # (G, L, L)
    if G == 1:
        return torch.matmul(T[0], u)  # broadcast over the batch: B matmuls (L, L) @ (L, d), no copies
    y = torch.einsum("gts,bsgc->btgc", T, u.view(batch, length, G, d // G))
    return y.reshape(batch, length, d)


def _grouped_matmul(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """w (G, P, Q) applied to x (B, n, Q, d) per channel group (G contiguous groups of d / G) -> (B, n, P, d)."""
    if w.shape[0] == 1:
        return torch.matmul(w[0], x)  # broadcast over (B, n): no copies
    batch, n, q, d = x.shape
    G = w.shape[0]
    y = torch.einsum("gpq,bnqgc->bnpgc", w, x.reshape(batch, n, q, G, d // G))
    return y.reshape(batch, n, w.shape[1], d)


def block_convolution(u: torch.Tensor, k: torch.Tensor, dtA: torch.Tensor, c: torch.Tensor,
                      anticausal: bool) -> torch.Tensor:
    """The S4D convolution of `direct_convolution` in blocks of T = k.shape[-1] positions: O(L (T + 4M) d) work.

    u: (B, L, d); k: (G, T) the kernels' first T lags; dtA, c: complex (G, M), their modes: K[l] =
    Re(sum_m c_m z_m^l) with z = exp(dtA) for every l >= 1 (lag 0 is k's alone: the skip term D folds in).

    With t = jT + a and s = iT + b, the pairs inside one block (i = j) are a (T, T) Toeplitz matmul, as in
    `direct_convolution`. The pairs across blocks (i < j, causal) have lag (j-i-1)T + a + (T-b) >= 1, so
        y[jT + a] += Re(sum_m c_m z_m^a h_j[m]),   h_j = sum_{i<j} z^((j-1-i)T) sum_b z^(T-b) u[iT + b]:
    the modal state entering block j, carried from block to block as h_{j+1} = z^T h_j + V u_j. Reading a
    block into the state (V, (2M, T)) and the state out into a block (U, (T, 2M)) are real matmuls (the
    real and imaginary parts stacked), and only the carry over L / T blocks is a loop. The anti-causal
    direction mirrors it: U[a] = c z^(T-a), V[b] = z^b, the state carried from the last block backwards.
    Every matmul runs in bf16 under autocast (float32 accumulation); the carry is float32 (float64 stays).
    Sequences that are not a multiple of T are zero-padded at the end (no effect in either direction).
    Plain differentiable torch ops: autograd gives the gradients for u, k, dtA and c.
    """
    batch, length, d = u.shape
    T = k.shape[-1]
    if length <= T:
        return direct_convolution(u, k[:, :length], anticausal)
    G, M = dtA.shape
    nb = -(-length // T)
    x = u if nb * T == length else F.pad(u, (0, 0, 0, nb * T - length))
    x = x.view(batch, nb, T, d)
    steps = torch.arange(T + 1, device=u.device, dtype=dtA.real.dtype)
    # (G, M, T + 1): z^0 .. z^T, as |z|^l e^(i l arg z) (a complex exp measured 2.5x slower on CPU)
    powers = torch.polar(torch.exp(dtA.real.unsqueeze(-1) * steps), dtA.imag.unsqueeze(-1) * steps)
    near, far = powers[..., :T], powers[..., 1:].flip(-1)  # z^a and z^(T - a), a = 0..T-1
    read, write = (near, far) if anticausal else (far, near)
    write = c.unsqueeze(-1) * write
    write = torch.cat([write.real, -write.imag], dim=1).transpose(1, 2)  # (G, T, 2M)
    # one matmul per block gives both its own outputs (Toeplitz rows) and what it adds to the state (V rows)
    both = torch.cat([toeplitz(k, anticausal), read.real, read.imag], dim=1)  # (G, T + 2M, T)
    out = _grouped_matmul(both, x)  # (B, nb, T + 2M, d)
    wide = torch.promote_types(out.dtype, torch.float32)
    s = torch.complex(out[:, :, T:T + M].to(wide), out[:, :, T + M:].to(wide))  # (B, nb, M, d)
    decay = powers[..., T]  # (G, M): z^T
    decay = decay[0].unsqueeze(-1) if G == 1 else decay.t().repeat_interleave(d // G, dim=1)  # (M, 1 or d)
    h, states = None, []
    for j in (range(nb - 1, 0, -1) if anticausal else range(nb - 1)):
        h = s[:, j] if h is None else h * decay + s[:, j]
        states.append(h)
    if anticausal:
        states.reverse()
    H = torch.stack(states, dim=1)  # (B, nb - 1, M, d): the state entering block j + 1 (j - 1 anti-causally)
    H = F.pad(torch.cat([H.real, H.imag], dim=2), (0, 0, 0, 0, 0, 1) if anticausal else (0, 0, 0, 0, 1, 0))
    y = _grouped_matmul(write, H).add_(out[:, :, :T])  # (B, nb, T, d); in place: no matmul saves its output
    y = y.view(batch, nb * T, d)
    return y if nb * T == length else y[:, :length]


class S4DMixer(nn.Module):
    """Both directions' S4D kernels applied to (u_f, u_b), each (B, L, d) in the original order.

    The forward direction is a causal convolution, the backward one its anti-causal mirror (no sequence
    flips). On CPU, short sequences (up to `direct_max_length`) take the direct Toeplitz matmul, longer ones
    the block convolution (blocks of `block_size` positions), both matmuls that run in bf16 under autocast;
    CUDA, and CPU with `block_size` 0 (float32 by default), take the FFT convolution (float32 even under
    autocast). Measured on CPU (width 256): direct vs FFT, per direction, forward + backward: fp32 1.5x at
    L = 256, even at 512; bf16 autocast 2x at 256, 1.9x at 512, 0.6x at 1,024 (where the block path takes
    over: 1.0x the direct path's speed at 1,024 forward + backward, 1.9x forward). Block vs FFT: `block_size`.
    """

    #: longest L for the direct path without / under autocast; CUDA always takes the FFT path.
    #: Set it on an instance (e.g. {"float32": 0, "autocast": 0}) to choose a path by hand.
    direct_max_length: dict[str, int] = {"float32": 256, "autocast": 512}
    #: block length T of the block convolution that CPU sequences longer than `direct_max_length` take
    #: without / under autocast; 0 = the FFT convolution instead. Measured (2 busy cores, width 256, 16,384
    #: tokens, both directions): bf16 autocast forward 4-6x the FFT path's speed at L = 1,024-4,096 (T = 256
    #: beats 128 and 512), forward + backward 2.4x; float32 forward 2x but forward + backward 1.0-1.2x, so
    #: float32 keeps the FFT path by default (its numerics unchanged); set {"float32": 256, ...} to opt in.
    block_size: dict[str, int] = {"float32": 0, "autocast": 256}

    def __init__(self, config: MambaCodeConfig, layer_idx: int | None = None):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.num_kernels = config.num_kernels
        self.layer_idx = layer_idx
        self.kernel = S4DKernel(config)

    def forward(self, u_f: torch.Tensor, u_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u_f, u_b) -> (y_f, y_b), all (B, L, d) in the original order: y_f causal, y_b anti-causal."""
        length = u_f.shape[1]
        dtype = u_f.dtype
        autocast = torch.is_autocast_enabled(u_f.device.type)
        key = "autocast" if autocast else "float32"
        on_cpu = u_f.device.type != "cuda"
        direct = on_cpu and length <= self.direct_max_length[key]
        block = self.block_size[key] if on_cpu and not direct else 0
        k = self.kernel.materialize(min(length, block) if block else length)  # (2, G, L or T)
        # the skip term D*u is the convolution with D at lag 0: fold it into the kernel (no extra pass)
        k = torch.cat([k[..., :1] + self.kernel.D.to(k.dtype).unsqueeze(-1), k[..., 1:]], dim=-1)
        if direct or block:
            if not autocast:  # without autocast the sums run in float32 (float64 stays), as on the FFT path
                wide = torch.promote_types(dtype, torch.float32)
                u_f, u_b = u_f.to(wide), u_b.to(wide)
            if block:
                dtA, c = self.kernel.modes()  # (2, G, M)
                y_f = block_convolution(u_f, k[0], dtA[0], c[0], False)
                y_b = block_convolution(u_b, k[1], dtA[1], c[1], True)
            else:
                y_f, y_b = direct_convolution(u_f, k[0], False), direct_convolution(u_b, k[1], True)
            return y_f.to(dtype), y_b.to(dtype)
        # u stays in its dtype (bf16 under autocast: half the saved memory); the transforms promote it to
        # float32 in their transposing copy, so the FFTs and products are float32 either way
        y_f = FFTConvolution.apply(u_f, k[0], False)
        y_b = FFTConvolution.apply(u_b, k[1], True)
        # one pass casts back (bf16 under autocast) and restores the (B, L, d) layout the projections read
        contiguous = torch.contiguous_format
        return y_f.to(dtype, memory_format=contiguous), y_b.to(dtype, memory_format=contiguous)


__all__ = ["S4DKernel", "S4DMixer", "FFTConvolution", "block_convolution", "direct_convolution", "fft_size",
           "s4d_kernel", "s4d_modes", "toeplitz"]
