"""DPL's objectives (Zhang et al., "Cross-quality DeepFake Detection via Dual Progressive Learning",
ACCV 2024; docs/methods/dpl.md, "Stage I" and "Stage II").

* Stage I (Sec. 3.3, Eq. 3): L_1 = L_CE + L_REG, L_CE the focal loss (Lin et al., 2017) on the two-class
  softmax, L_REG the entropy term of Eq. 2 on hard samples (cross-entropy above ln 2). The text's intent
  ("make the network refrain from making decisions in the early time steps") and the released code agree:
  the entropy of hard samples is **maximised**, L_REG = −mean_hard H(c); Eq. 2 as printed has the
  opposite sign.
* Stage II (Eqs. 4–6): PPO on the feature-selection policy Φ: the clipped surrogate L_REW, the value loss
  L_SE and the entropy bonus L_EN, L_2 = L_REW + c_v·L_SE − c_e·L_EN (paper: c_v = c_e = 1; code: 0.5,
  0.01), with returns built from the rewards r_t = c_t − c_{t−1}.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN2 = math.log(2.0)


def focal_loss(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float = 2.0, alpha: float = 1.0
) -> torch.Tensor:
    """Per-sample focal loss on class logits [N, K]: −α (1 − p_y)^γ log p_y (Lin et al., ICCV 2017, Eq. 5;
    DPL: γ = 2, α = 1). ``gamma=0, alpha=1`` is the cross-entropy."""
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, labels.long().view(-1, 1)).squeeze(1)
    return -alpha * (1.0 - logp.exp()) ** gamma * logp


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(c) = −Σ_j c^j log c^j of the softmax of ``logits`` [..., K] (nats), over the last axis."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def hard_mask(final_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Π(x_i) of Eq. 2: 1 where the cross-entropy of the (detached) final prediction exceeds ln 2, i.e. the
    true class gets probability below 1/2 (the released code's hardness)."""
    ce = F.cross_entropy(final_logits.detach().float(), labels.long(), reduction="none")
    return ce > LN2


def entropy_regulariser(step_logits: torch.Tensor, valid: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """L_REG (Eq. 2, sign per docs/methods/dpl.md: maximised): −(1/|hard|) Σ_{i hard} mean_t H(c_{i,t}),
    the mean over the steps valid for sample i.

    ``step_logits`` [T, N, K]: the predictions at the steps the regulariser covers; ``valid`` [T, N] which
    of them count for each sample (the steps up to its effective one); ``hard`` [N] boolean. A batch with
    no hard sample gives 0.
    """
    h = entropy(step_logits)  # [T, N]
    valid = valid.to(h.dtype)
    per_sample = (h * valid).sum(0) / valid.sum(0).clamp_min(1.0)
    hard = hard.to(h.dtype)
    return -(per_sample * hard).sum() / hard.sum().clamp_min(1.0)


def discounted_returns(
    rewards: torch.Tensor, valid: torch.Tensor, gamma: float, normalise: bool
) -> torch.Tensor:
    """R_t = Σ_{j ≥ t} γ^{j−t} r_j over each sample's valid actions (rewards, valid: [T, N]).

    γ = 1 is the paper's plain sum of the rewards still to come; the released code uses γ = 0.7 and
    normalises the returns to zero mean, unit std (here over the valid entries, with ε = 1e-5).
    """
    rewards = rewards * valid.to(rewards.dtype)
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    if normalise:
        sel = out[valid.bool()]
        if sel.numel() > 1:
            out = (out - sel.mean()) / (sel.std() + 1e-5)
    return out * valid.to(out.dtype)


def ppo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    entropy_: torch.Tensor,
    valid: torch.Tensor,
    clip: float = 0.2,
    value_weight: float = 1.0,
    entropy_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Eqs. 4–6 over the valid [T, N] entries: ratio ρ = exp(log p_Φ − log p_Φ'), advantage A = R − V
    (V detached), L_REW = −min(ρA, clip(ρ, 1−ε, 1+ε)A), L_SE = (V − R)², L_EN = entropy of the action
    distribution; L_2 = mean(L_REW + c_v·L_SE − c_e·L_EN). Returns every term (means over valid entries)."""
    ratio = torch.exp(logp - old_logp.detach())
    adv = returns - values.detach()
    rew = -torch.min(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    se = (values - returns) ** 2
    per = rew + value_weight * se - entropy_weight * entropy_
    w = valid.to(per.dtype)
    n = w.sum().clamp_min(1.0)
    return {
        "loss": (per * w).sum() / n,
        "reward_loss": (rew * w).sum() / n,
        "value_loss": (se * w).sum() / n,
        "entropy": (entropy_ * w).sum() / n,
    }
