"""ODKD (Zhao et al., arXiv 2104.10414): orderly dual-teacher distillation with binarised teacher heatmaps.

Only the paper's abstract is available, so this is a documented reconstruction (SPEC C, docs/odkd.md); every
choice the abstract leaves open is a ``loss:`` key. For every supervised stack ``S_k`` of the student:

    L = sum_k MSE(S_k, G') + lambda_kd * sum_k [MSE(S_k, B(T_pt)) + MSE(S_k, B(R(T_st, M_st)))]
        + mu * BCE(M_s, sigmoid(M_st))

- MSE is HRNet's JointsMSELoss with the ground-truth target weights (a joint without a label teaches nothing);
- ``G' = B(G)`` with ``binarize_gt: true`` (the same B; with ``binarize: none`` that is G), else ``G``;
- ``T_pt`` / ``T_st`` are the final heatmaps of the primary / senior teacher, present only in the epochs that
  teacher runs (the ``teachers:`` section's ``start`` / ``end``: PT ``[0, r)``, ST ``[r, 1)`` is the orderly
  schedule); an absent teacher's term is 0;
- ``B`` is the binarization (``binarize``): teacher maps clipped to [0, 1], then hard ``1[H >= t]`` or soft
  ``H * 1[H >= t]`` (``none``: the map as it is, plain heatmap distillation), with ``t = tau``
  (``tau_mode: absolute``) or ``t = tau * max(H)``, the map's own peak (``tau_mode: relative``);
- ``R`` restricts the senior teacher's heatmaps to its own predicted person mask ``M_st`` (``mask_mode``):
  ``binary`` multiplies by ``1[sigmoid(M_st) >= mask_threshold]``, ``sigmoid`` by ``sigmoid(M_st)``, ``none``
  leaves them as they are; restriction comes first, then binarization (SPEC C: "B(ST heatmaps restricted to
  the ST mask)");
- the mask term trains the student's auxiliary mask head ``M_s`` on the senior teacher's mask probabilities,
  in the senior teacher's epochs, when the student has a mask head (else it is 0);
- a labelled joint whose processed teacher map is empty (no value above 0 after restriction and binarization)
  gets weight 0 in that teacher's term: a teacher that does not find a joint teaches nothing about it, never
  "no joint here" (its ground-truth term is unchanged). ``count/kd_pt_empty`` / ``count/kd_st_empty`` count
  such joints, ``count/labelled_joints`` the labelled ones (summed, not averaged, over an epoch).

Every default of ODKD is written once, here: the keyword defaults of ``ODKDLoss`` (read through
``LOSSES.resolved``) and ``ORDER_SPLIT``, the orderly schedule's r, which the config gives a teacher whose
``start`` and ``end`` are both left out (``ODKDLoss.teacher_windows``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from losses.joints_mse import COUNT_PREFIX, PoseLoss, joints_mse, stack_mse_terms
from losses.pose_mask import check_weight, mask_bce
from losses.registry import LOSSES
from models.output import PoseOutput
from utils.errors import ConfigError

BINARIZE_MODES = ("hard", "soft", "none")
TAU_MODES = ("absolute", "relative")
MASK_MODES = ("binary", "sigmoid", "none")
ORDER_SPLIT = 0.5  # r: the primary teacher teaches epochs [0, r E), the senior one [r E, E) (SPEC C)


def binarize(heatmaps: Tensor, tau: float = 0.5, mode: str = "hard", tau_mode: str = "absolute") -> Tensor:
    """ODKD's B: clip to [0, 1], then ``1[H >= t]`` (hard) or ``H * 1[H >= t]`` (soft); ``none`` is H itself.

    ``t`` is ``tau`` (``absolute``) or ``tau`` times each map's own peak (``relative``: a weak but well-placed
    peak survives). Clipping first makes ``tau`` mean the same on every teacher (a raw heatmap may overshoot 1
    or dip below 0). A map with no value above 0 stays all zero in both modes.
    """
    if mode == "none":
        return heatmaps
    if mode not in BINARIZE_MODES:
        raise ConfigError(f"loss.binarize must be one of {', '.join(BINARIZE_MODES)}, got {mode!r}")
    clipped = heatmaps.clamp(0.0, 1.0)
    if tau_mode == "absolute":
        kept = clipped >= tau
    elif tau_mode == "relative":
        peak = clipped.flatten(-2).amax(-1)[..., None, None]
        kept = (clipped >= tau * peak) & (peak > 0)
    else:
        raise ConfigError(f"loss.tau_mode must be one of {', '.join(TAU_MODES)}, got {tau_mode!r}")
    return kept.to(heatmaps.dtype) if mode == "hard" else clipped * kept


def nonempty_joints(heatmaps: Tensor) -> Tensor:
    """(B, J) 1.0 where a joint's map (B, J, h, w) has a value above 0, else 0.0: an empty map says nothing."""
    return (heatmaps.flatten(2).amax(2) > 0).to(heatmaps.dtype)


def restrict_to_mask(heatmaps: Tensor, mask_logits: Tensor, mode: str, threshold: float = 0.5) -> Tensor:
    """Heatmaps (B, J, h, w) restricted to a person mask given as logits (B, 1, h, w) (``mask_mode``)."""
    if mode == "none":
        return heatmaps
    probability = torch.sigmoid(mask_logits.to(heatmaps.dtype))
    if mode == "sigmoid":
        return heatmaps * probability
    if mode == "binary":
        return heatmaps * (probability >= threshold).to(heatmaps.dtype)
    raise ConfigError(f"loss.mask_mode must be one of {', '.join(MASK_MODES)}, got {mode!r}")


@LOSSES.register("odkd")
class ODKDLoss(PoseLoss):
    """ODKD's loss (formula in the module docstring). Registered as loss ``odkd``; keys and defaults:

    ``lambda_kd``, ``tau``, ``tau_mode`` (absolute | relative), ``binarize`` (hard | soft | none),
    ``binarize_gt``, ``mu``, ``primary_teacher`` and ``senior_teacher`` (names in the ``teachers:`` section,
    either may be null: a one-teacher ablation), ``mask_mode`` (binary | sigmoid | none) and ``mask_threshold``;
    the defaults are the keyword defaults below (docs/odkd.md lists them; a test holds the two equal).
    Terms: ``mse/stack{k}``, ``mse``, ``kd_pt/stack{k}``, ``kd_pt``, ``kd_st/stack{k}``, ``kd_st`` (sums over
    stacks, before ``lambda_kd``), ``mask_kd`` (before ``mu``), ``total``, and the counts
    ``count/labelled_joints``, ``count/kd_pt_empty`` and ``count/kd_st_empty``.
    """

    teacher_keys = ("primary_teacher", "senior_teacher")

    @classmethod
    def teacher_windows(
        cls, values: Mapping[str, Any], teachers: Iterable[str]
    ) -> dict[str, tuple[float, float]]:
        """The orderly schedule: with both teachers defined, the primary one in ``[0, r)`` and the senior one
        in ``[r, 1)`` of the epochs (r = ``ORDER_SPLIT``); a lone teacher teaches the whole run."""
        named = set(teachers)
        primary, senior = values["primary_teacher"], values["senior_teacher"]
        if primary in named and senior in named:
            return {primary: (0.0, ORDER_SPLIT), senior: (ORDER_SPLIT, 1.0)}
        return {}

    def __init__(
        self,
        *,
        lambda_kd: float = 1.0,
        tau: float = 0.5,
        tau_mode: str = "absolute",  # docs/odkd.md: SPEC C's 1[H >= tau]; a teacher unsure of a joint skips it
        binarize: str = "hard",
        binarize_gt: bool = False,
        mu: float = 0.01,  # docs/odkd.md: at 0.1 and above the mask BCE swamps the keypoint MSE
        primary_teacher: str | None = "pt",
        senior_teacher: str | None = "st",
        mask_mode: str = "binary",
        mask_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.lambda_kd = check_weight("lambda_kd", lambda_kd)
        self.mu = check_weight("mu", mu)
        for key, value in (("tau", tau), ("mask_threshold", mask_threshold)):
            if not (isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0):
                raise ConfigError(f"loss.{key} must be a number in [0, 1], got {value!r}", key=f"loss.{key}")
        for key, value, modes in (
            ("binarize", binarize, BINARIZE_MODES),
            ("tau_mode", tau_mode, TAU_MODES),
            ("mask_mode", mask_mode, MASK_MODES),
        ):
            if value not in modes:
                raise ConfigError(
                    f"loss.{key} must be one of {', '.join(modes)}, got {value!r}", key=f"loss.{key}"
                )
        if not isinstance(binarize_gt, bool):
            raise ConfigError(
                f"loss.binarize_gt must be true or false, got {binarize_gt!r}", key="loss.binarize_gt"
            )
        if primary_teacher is not None and primary_teacher == senior_teacher:
            raise ConfigError(
                f"loss.senior_teacher: the primary and the senior teacher are both '{primary_teacher}'; "
                "name two teachers, or set one of them to null",
                key="loss.senior_teacher",
            )
        self.tau = float(tau)
        self.tau_mode = tau_mode
        self.binarize = binarize
        self.binarize_gt = binarize_gt
        self.primary_teacher = primary_teacher
        self.senior_teacher = senior_teacher
        self.mask_mode = mask_mode
        self.mask_threshold = float(mask_threshold)

    def forward(self, output: PoseOutput, batch: dict[str, Any], epoch: int = 0) -> dict[str, Tensor]:
        target, target_weight = batch["target"], batch["target_weight"]
        if self.binarize_gt:
            target = binarize(target, self.tau, self.binarize, self.tau_mode)
        terms = stack_mse_terms(output, target, target_weight)
        zero = terms["mse"].new_zeros(())
        primary = output.teachers.get(self.primary_teacher) if self.primary_teacher else None
        senior = output.teachers.get(self.senior_teacher) if self.senior_teacher else None
        terms["kd_pt"] = terms["kd_st"] = terms["mask_kd"] = zero
        labelled = (target_weight.reshape(target.shape[:2]) > 0).to(target.dtype)
        terms[f"{COUNT_PREFIX}labelled_joints"] = labelled.sum()
        terms[f"{COUNT_PREFIX}kd_pt_empty"] = terms[f"{COUNT_PREFIX}kd_st_empty"] = zero
        if primary is not None:
            terms.update(self.kd_terms("kd_pt", output, self.primary_target(primary), target_weight))
        if senior is not None:
            terms.update(self.kd_terms("kd_st", output, self.senior_target(senior), target_weight))
        if senior is not None and output.mask is not None and self.mu > 0:
            teacher_mask = self.teacher_mask(senior, "the mask term (loss.mu > 0)")
            terms["mask_kd"] = mask_bce(output.mask, torch.sigmoid(teacher_mask.detach()))
        terms["total"] = (
            terms["mse"] + self.lambda_kd * (terms["kd_pt"] + terms["kd_st"]) + self.mu * terms["mask_kd"]
        )
        return terms

    def check_outputs(self, student: PoseOutput, teachers: Mapping[str, PoseOutput]) -> None:
        """The senior teacher has the mask head that ``mask_mode`` reads (and, for a student with a mask head,
        the mask term), found at start-up rather than in the first epoch the senior teacher teaches."""
        senior = teachers.get(self.senior_teacher) if self.senior_teacher else None
        if senior is None:
            return
        if self.mask_mode != "none":
            self.teacher_mask(senior, f"loss.mask_mode: {self.mask_mode}")
        if student.mask is not None and self.mu > 0:
            self.teacher_mask(senior, "the mask term (loss.mu > 0)")

    def primary_target(self, teacher: PoseOutput) -> Tensor:
        """B(T_pt): the primary teacher's final heatmap, binarised."""
        return binarize(teacher.final.detach(), self.tau, self.binarize, self.tau_mode)

    def senior_target(self, teacher: PoseOutput) -> Tensor:
        """B(R(T_st, M_st)): the senior teacher's final heatmap restricted to its mask, then binarised."""
        heatmaps = teacher.final.detach()
        if self.mask_mode != "none":
            mask = self.teacher_mask(teacher, f"loss.mask_mode: {self.mask_mode}")
            heatmaps = restrict_to_mask(heatmaps, mask.detach(), self.mask_mode, self.mask_threshold)
        return binarize(heatmaps, self.tau, self.binarize, self.tau_mode)

    def teacher_mask(self, teacher: PoseOutput, needed_by: str) -> Tensor:
        """The senior teacher's mask logits; a teacher without a mask head is a ConfigError."""
        if teacher.mask is None:
            raise ConfigError(
                f"the senior teacher '{self.senior_teacher}' has no mask head, which {needed_by} needs: give it a "
                "checkpoint of a network with mask_head: true (and deploy_mask_head: true, so that deploy.pth "
                "keeps it), or set loss.mask_mode: none and loss.mu: 0",
                key=f"teachers.{self.senior_teacher}",
            )
        return teacher.mask

    @staticmethod
    def kd_terms(
        name: str, output: PoseOutput, soft_target: Tensor, target_weight: Tensor
    ) -> dict[str, Tensor]:
        """``name/stack{k}`` = MSE(S_k, soft target) for every supervised stack, their sum ``name``, and
        ``count/{name}_empty``: the labelled joints whose soft target is empty, which get weight 0 here."""
        present = nonempty_joints(soft_target)
        labelled = target_weight.reshape(present.shape).to(present.dtype)
        weight = labelled * present
        terms = {f"{name}/stack{k}": joints_mse(h, soft_target, weight) for k, h in enumerate(output.stacks)}
        terms[name] = sum(terms.values())
        terms[f"{COUNT_PREFIX}{name}_empty"] = ((labelled > 0) & (present == 0)).sum().to(present.dtype)
        return terms
