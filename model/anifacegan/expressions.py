"""Expression codes: Deep3DFaceRecon `.mat` coefficient files, plain vectors, and named built-ins."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from importlib import resources

import numpy as np
import scipy.io
import torch

from artmator.model.backbone import ExpressionError  # defined with the generic contract: generic code catches it
from artmator.model.weights import read_bytes

EXP_DIM = 64

# Built-in named expressions shipped with the package. `happiness` is the official AniFaceGAN example smile
# (3DMM coefficients of FFHQ image 01626, MIT licence; see model/anifacegan/data/NOTICE.md).
BUILTIN_EXPRESSIONS = {"neutral": None, "happiness": "smile_01626.mat"}


def load_mat_coefficients(uri: str, storage_options: Mapping | None = None) -> dict[str, np.ndarray]:
    """All arrays of a Deep3DFaceRecon coefficient `.mat` (id 1x80, exp 1x64, tex, angle, gamma, trans, lm68)."""
    try:
        mat = scipy.io.loadmat(io.BytesIO(read_bytes(uri, storage_options)))
    except FileNotFoundError as exc:
        raise ExpressionError(f"expression file {uri} does not exist") from exc
    except (ValueError, TypeError, OSError, IndexError, KeyError) as exc:  # scipy raises many kinds on junk
        raise ExpressionError(f"{uri} is not a readable MATLAB coefficient file ({exc})") from exc
    return {k: np.asarray(v) for k, v in mat.items() if not k.startswith("__")}


def expression_from_vector(values: Sequence[float] | np.ndarray | torch.Tensor, source: str = "vector") -> torch.Tensor:
    """Validate a plain coefficient vector: 64 finite numbers -> (64,) float32."""
    t = torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32).reshape(-1)
    if t.numel() != EXP_DIM:
        raise ExpressionError(f"{source}: an expression has {EXP_DIM} coefficients, got {t.numel()}")
    if not torch.isfinite(t).all():
        raise ExpressionError(f"{source}: expression coefficients must be finite")
    return t


def load_expression(spec: str, storage_options: Mapping | None = None) -> torch.Tensor:
    """A built-in name (`neutral`, `happiness`) or a `.mat` path/URI -> (64,) expression coefficients."""
    if spec in BUILTIN_EXPRESSIONS:
        fname = BUILTIN_EXPRESSIONS[spec]
        if fname is None:
            return torch.zeros(EXP_DIM)
        with resources.files("artmator.model.anifacegan").joinpath("data").joinpath(fname).open("rb") as f:
            mat = scipy.io.loadmat(f)
        return expression_from_vector(mat["exp"], source=spec)
    if not spec.lower().endswith(".mat"):
        raise ExpressionError(
            f"unknown expression {spec!r}: use one of {sorted(BUILTIN_EXPRESSIONS)} or a Deep3DFaceRecon .mat file"
        )
    mat = load_mat_coefficients(spec, storage_options)
    if "exp" not in mat:
        raise ExpressionError(f"{spec} has no 'exp' array (found {sorted(mat)})")
    return expression_from_vector(mat["exp"], source=spec)
