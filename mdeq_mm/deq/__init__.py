"""Pure-PyTorch deep-equilibrium engine: solvers, implicit gradients, diagnostics."""
from .anderson import AndersonSolver
from .broyden import BroydenSolver
from .fixed_budget import solve_fixed_budget
from .fixed_point import FixedPointSolver
from .implicit import DEQ_MODES, BackwardConfig, DEQCore, FallbackConfig, TrajectoryConfig
from .jacobian import jacobian_frobenius_reg, spectral_radius
from .solve import SOLVERS, SolveError, SolverConfig, SolverState, solve
from .state import StatePacker
from .stats import SolverStats

__all__ = [
    'AndersonSolver', 'BackwardConfig', 'BroydenSolver', 'DEQCore', 'DEQ_MODES', 'FallbackConfig',
    'FixedPointSolver', 'SOLVERS', 'SolveError', 'SolverConfig', 'SolverState', 'SolverStats',
    'StatePacker', 'TrajectoryConfig', 'jacobian_frobenius_reg', 'solve', 'solve_fixed_budget',
    'spectral_radius'
]
