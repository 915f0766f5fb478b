"""The torch flow core: velocity networks, ODE integration, divergences, blocks, training.

Pure torch: nothing here knows scikit-learn or numpy validation. The estimators in
:mod:`sigflow.estimators` use :func:`train_flow` and :class:`Flow`.
"""

from ._diagnostics import convergence_diagnostics, sliced_wasserstein_to_normal
from ._divergence import exact_divergence, hutchinson_divergence, rademacher_probes
from ._flow import Flow, FlowBlock, standard_normal_log_prob
from ._jko import jko_block_loss, jko_block_terms, train_jko_blocks
from ._ode import (
    FIXED_STEP_SOLVERS,
    evaluations_per_step,
    integrate_adaptive,
    integrate_fixed,
    integrate_fixed_into,
    integrate_fixed_with_error,
)
from ._training import (
    NonFiniteLossError,
    SolverAccuracyWarning,
    TrainingConfig,
    TrainingResult,
    finetune_flow,
    flow_nll_terms,
    ou_step_sizes,
    sample_times,
    smooth_rows,
    train_flow,
)
from ._velocity import VelocityMLP

__all__ = [
    "finetune_flow",
    "flow_nll_terms",
    "FIXED_STEP_SOLVERS",
    "Flow",
    "FlowBlock",
    "NonFiniteLossError",
    "SolverAccuracyWarning",
    "TrainingConfig",
    "TrainingResult",
    "VelocityMLP",
    "convergence_diagnostics",
    "evaluations_per_step",
    "exact_divergence",
    "hutchinson_divergence",
    "integrate_adaptive",
    "integrate_fixed",
    "integrate_fixed_into",
    "integrate_fixed_with_error",
    "jko_block_loss",
    "jko_block_terms",
    "ou_step_sizes",
    "sample_times",
    "rademacher_probes",
    "sliced_wasserstein_to_normal",
    "smooth_rows",
    "standard_normal_log_prob",
    "train_flow",
    "train_jko_blocks",
]
