"""Masked-diffusion loss (1/p weighting), the low-confidence-remasking sampler and MC likelihoods."""
import pytest
import torch
import torch.nn.functional as F

from qsched_core.dllm.diffusion import (
    check_gen_args,
    generate,
    left_pad,
    loglik,
    mask_draws,
    mdm_loss,
    noise,
    sft_loss,
    stratified_counts,
    transfer_schedule,
)

MASK, PAD = 2, 0


def test_mdm_loss_is_masked_ce_over_p(tiny_model):
    x0 = torch.randint(3, 600, (3, 12))
    loss = mdm_loss(tiny_model, x0, MASK, generator=torch.Generator().manual_seed(1))
    xt, masked, p = noise(x0, MASK, torch.Generator().manual_seed(1))
    logp = F.log_softmax(tiny_model(xt), -1).gather(-1, x0[..., None])[..., 0]  # (B, L)
    want = -(logp * masked / p[:, None]).sum() / x0.numel()
    torch.testing.assert_close(loss, want)


def test_sft_never_masks_the_prompt(tiny_model):
    x0 = torch.randint(3, 600, (4, 10))
    frozen = torch.zeros_like(x0, dtype=torch.bool)
    frozen[:, :6] = True
    _, masked, _ = noise(x0, MASK, torch.Generator().manual_seed(0), frozen=frozen, eps=0.999)
    assert not masked[:, :6].any() and masked[:, 6:].all()
    loss = sft_loss(tiny_model, x0, frozen, torch.full((4,), 4), MASK, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss > 0


def test_schedule_and_argument_checks():
    assert transfer_schedule(10, 4) == [3, 3, 2, 2]
    with pytest.raises(ValueError, match="multiple of block_len"):
        check_gen_args(10, 4, 10)
    with pytest.raises(ValueError, match="number of blocks"):
        check_gen_args(8, 4, 3)


def test_sampler_commits_one_token_per_step_and_never_remasks(tiny_model):
    out, states = generate(tiny_model, [[1, 5, 6, 7], [1, 9]], gen_len=8, block_len=4, mask_id=MASK, pad_id=PAD,
                           trace=True)
    assert len(states) == 9 and not (out == MASK).any()
    for before, after in zip(states, states[1:]):
        changed = before != after
        assert (changed.sum(1) == 1).all()  # steps = gen_len: one token per step per row
        assert (before[changed] == MASK).all()  # only masked positions change: nothing is re-masked
    first_block_done = states[4]
    assert not (first_block_done[:, :4] == MASK).any() and (first_block_done[:, 4:] == MASK).all()  # semi-AR


def test_generation_is_deterministic_at_temperature_zero(tiny_model):
    a = generate(tiny_model, [[1, 5, 6]], 4, 2, mask_id=MASK, pad_id=PAD)
    b = generate(tiny_model, [[1, 5, 6]], 4, 2, mask_id=MASK, pad_id=PAD)
    assert torch.equal(a, b)


def test_stratified_mask_draws_are_seeded_and_cover_counts():
    counts = stratified_counts(4, 8, torch.Generator().manual_seed(0))
    assert set(counts.tolist()) == {1, 2, 3, 4} and max(torch.bincount(counts)) <= 3  # every count, spread
    assert torch.equal(mask_draws(5, 16, seed=3), mask_draws(5, 16, seed=3))
    assert (mask_draws(5, 16, seed=3).sum(1) >= 1).all()


def test_one_token_likelihood_is_exact(tiny_model):
    prompt, answer = [1, 5, 6, 7], [42]
    est = loglik(tiny_model, [(prompt, answer)], [0], mc_num=3, mask_id=MASK, pad_id=PAD)
    logits = tiny_model(torch.tensor([prompt + [MASK]]))[0, -1]
    torch.testing.assert_close(est[0].float(), F.log_softmax(logits, -1)[42], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_likelihood_matches_a_naive_loop(tiny_model):
    pairs = [([1, 5, 6], [7, 8, 9]), ([1, 5], [11, 12])]
    got = loglik(tiny_model, pairs, [4, 5], mc_num=6, mask_id=MASK, pad_id=PAD, batch_rows=5)
    for (prompt, answer), seed, g in zip(pairs, [4, 5], got):
        total = 0.0
        for d in mask_draws(len(answer), 6, seed):
            x = torch.tensor([prompt + [MASK if m else a for a, m in zip(answer, d.tolist())]])
            logp = F.log_softmax(tiny_model(x)[0, len(prompt):], -1)
            total += float(sum(logp[i, a] for i, a in enumerate(answer) if d[i])) * len(answer) / int(d.sum())
        assert abs(total / 6 - float(g)) < 1e-4
    ids, attn = left_pad([[1, 2], [3]], PAD)
    assert ids.tolist() == [[1, 2], [0, 3]] and attn.tolist() == [[True, True], [False, True]]
