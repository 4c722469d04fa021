"""The block convolution of the S4D mixer (`block_convolution`, long sequences on CPU) against a float64
sequential recurrence of the S4D state-space model, written here from the raw parameters:

    z_m = exp(dt A_m),  c_m = (2 if conjugate pairs else 1) * C_m (z_m - 1) / A_m,  A = min(A_re, -1e-4) + i A_im
    causal:       h_t = z h_{t-1} + u_t,  y_t = Re(sum_m c_m h_t[m]) + D u_t
    anti-causal:  the same recurrence run from the last position to the first.

Outputs and gradients (input, every kernel parameter) of the mixer's block path are compared with it, for
lengths below, at and beyond multiples of the block, one kernel (G = 1) and channel groups (G > 1), with
and without conjugate pairs. The bf16 autocast path is held within a bound of float32.
"""

import pytest
import torch

from mambacode.modeling.s4d import S4DMixer, block_convolution


def recurrence(kernel, u: torch.Tensor, direction: int) -> torch.Tensor:
    """y (B, L, d) float64 of one direction by the sequential state-space recurrence (differentiable)."""
    log_step = kernel.log_step[direction].double()  # (G,)
    A = torch.complex(torch.clamp(kernel.A_real[direction].double(), max=-1e-4), kernel.A_imag[direction].double())
    C = torch.complex(kernel.C[direction, ..., 0].double(), kernel.C[direction, ..., 1].double())
    D = kernel.D[direction].double()
    dt = torch.exp(log_step).unsqueeze(-1)
    z = torch.exp(dt * A)  # (G, M)
    c = C * (z - 1) / A * (2.0 if kernel.conjugate_pairs else 1.0)
    batch, length, d = u.shape
    G = z.shape[0]
    group = torch.arange(d) // (d // G)  # channel -> its kernel
    z_c, c_c, D_c = z[group].T, c[group].T, D[group]  # (M, d), (M, d), (d,)
    u = u.double()
    h = torch.zeros(batch, z.shape[1], d, dtype=torch.complex128)
    out = [None] * length
    for t in (range(length) if direction == 0 else range(length - 1, -1, -1)):
        h = z_c * h + u[:, t].unsqueeze(1)
        out[t] = (c_c * h).sum(1).real + D_c * u[:, t]
    return torch.stack(out, dim=1)


def make_mixer(tiny, groups: int, conjugate_pairs: bool, block: int) -> S4DMixer:
    config = tiny(hidden_size=12, hf_conv_groups=4, num_kernels=groups, state_size=8, ssm_dt_min=0.01, ssm_dt_max=0.5,
                  s4d_conjugate_pairs=conjugate_pairs)
    mixer = S4DMixer(config).double()
    with torch.no_grad():
        mixer.kernel.A_real.uniform_(-1.0, -0.01)  # varied decay, some slow modes
        mixer.kernel.D.normal_()
    mixer.direct_max_length = {"float32": 0, "autocast": 0}
    mixer.block_size = {"float32": block, "autocast": block}
    return mixer


@pytest.mark.parametrize("conjugate_pairs", [True, False])
@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("length", [1, 7, 8, 9, 24, 37])
def test_block_path_matches_the_float64_recurrence(length, groups, conjugate_pairs, tiny):
    block = 8
    mixer = make_mixer(tiny, groups, conjugate_pairs, block)
    u_f, u_b = torch.randn(2, length, 12, dtype=torch.float64), torch.randn(2, length, 12, dtype=torch.float64)
    y_f, y_b = mixer(u_f, u_b)
    assert y_f.dtype == torch.float64 and y_f.shape == (2, length, 12)
    torch.testing.assert_close(y_f, recurrence(mixer.kernel, u_f, 0), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y_b, recurrence(mixer.kernel, u_b, 1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("conjugate_pairs", [True, False])
@pytest.mark.parametrize("groups,length", [(1, 21), (3, 16), (3, 19)])
def test_block_path_gradients_match_the_float64_recurrence(groups, length, conjugate_pairs, tiny):
    """d(loss)/d(u_f, u_b, log_step, A_real, A_imag, C, D) by autograd through the block path equals the same
    through the sequential recurrence, for a random linear loss on both directions' outputs."""
    mixer = make_mixer(tiny, groups, conjugate_pairs, 8)
    u_f = torch.randn(2, length, 12, dtype=torch.float64, requires_grad=True)
    u_b = torch.randn(2, length, 12, dtype=torch.float64, requires_grad=True)
    w_f, w_b = torch.randn(2, length, 12, dtype=torch.float64), torch.randn(2, length, 12, dtype=torch.float64)
    leaves = [u_f, u_b] + list(mixer.kernel.parameters())

    y_f, y_b = mixer(u_f, u_b)
    got = torch.autograd.grad((y_f * w_f).sum() + (y_b * w_b).sum(), leaves)
    r_f, r_b = recurrence(mixer.kernel, u_f, 0), recurrence(mixer.kernel, u_b, 1)
    ref = torch.autograd.grad((r_f * w_f).sum() + (r_b * w_b).sum(), leaves)
    names = ["u_f", "u_b"] + [n for n, _ in mixer.kernel.named_parameters()]
    for name, g, r in zip(names, got, ref):
        torch.testing.assert_close(g, r, rtol=1e-8, atol=1e-9, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("anticausal", [False, True])
def test_block_convolution_matches_a_direct_sum_of_the_kernel(anticausal):
    """`block_convolution` alone, from arbitrary modes: y[t] = sum_s K[|t - s|] u[s] over s <= t (causal) or
    s >= t (anti-causal), K[l] = Re(sum_m c_m z_m^l) for l >= 1 and any K[0] (D folded in), as a float64 double
    loop."""
    torch.manual_seed(1)
    G, M, T, length, d = 2, 3, 5, 23, 4
    dtA = torch.complex(-torch.rand(G, M, dtype=torch.float64), 3 * torch.randn(G, M, dtype=torch.float64))
    c = torch.randn(G, M, dtype=torch.complex128)
    K = torch.stack([(c * torch.exp(dtA * lag)).sum(-1).real for lag in range(length)], dim=-1)
    K[:, 0] = torch.randn(G, dtype=torch.float64)
    head = K[:, :T].clone()
    u = torch.randn(2, length, d, dtype=torch.float64)
    ref = torch.zeros_like(u)
    for ch in range(d):
        g = ch // (d // G)
        for t in range(length):
            for s in range(length):
                if (s <= t) if not anticausal else (s >= t):
                    ref[:, t, ch] += K[g, abs(t - s)] * u[:, s, ch]
    torch.testing.assert_close(block_convolution(u, head, dtA, c, anticausal), ref, rtol=1e-10, atol=1e-10)


def test_block_path_under_bf16_autocast_is_within_bounds(tiny):
    """Under CPU bf16 autocast (the default for sequences longer than `direct_max_length["autocast"]`), the
    block path's matmuls run in bf16: within 1% (relative L2) of the float32 result, in both directions."""
    torch.manual_seed(0)
    mixer = S4DMixer(tiny(hidden_size=32, num_kernels=1, state_size=16), 0)
    length = mixer.direct_max_length["autocast"] + 77
    assert mixer.block_size["autocast"] > 0
    u_f, u_b = torch.randn(2, length, 32).bfloat16(), torch.randn(2, length, 32).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = mixer(u_f, u_b)
    mixer.block_size = {"float32": 0, "autocast": 0}
    ref = mixer(u_f.float(), u_b.float())  # the float32 FFT path
    for g, r in zip(got, ref):
        assert g.dtype == torch.bfloat16 and g.shape == r.shape
        assert (g.float() - r).norm() / r.norm() < 0.01
