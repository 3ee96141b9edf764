"""Safe reading and strict loading of weight files (.pth and .safetensors) from local paths or fsspec URIs.

`.pth` files are pickles: they are only ever opened with `torch.load(weights_only=True)`, which refuses
any pickle that would construct arbitrary objects or run code. Everything this project writes is safetensors.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from collections.abc import Mapping

import fsspec
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from torch import nn


class WeightsError(ValueError):
    """A weight file that cannot be used; the message names the part, the file and what is wrong."""


HTTP_TIMEOUT_S = 120.0
"""Default bound on one http(s) request (connecting, and waiting for each chunk of the answer)."""


def read_bytes(uri: str, storage_options: Mapping | None = None, timeout_s: float | None = None) -> bytes:
    """Read a whole file from a local path or any fsspec URI (s3://, gs://, https://, file://, memory://).

    `storage_options` are the run's object-store options (credentials, endpoint); http(s) URIs are read without
    them (a signed URL carries its own authorisation, and aiohttp refuses s3fs's keyword arguments), and every
    http(s) request is bounded by `timeout_s` (default `HTTP_TIMEOUT_S`): a server that stalls raises
    TimeoutError instead of hanging.
    """
    options = dict(storage_options or {})
    if str(uri).lower().startswith(("http://", "https://")):
        import asyncio

        import aiohttp

        limit = float(timeout_s or HTTP_TIMEOUT_S)
        options = {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, connect=limit, sock_connect=limit,
                                                                       sock_read=limit)}}
        try:
            with fsspec.open(uri, "rb", **options) as f:
                return f.read()
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise TimeoutError(f"{_shown(uri)}: no answer within {limit:g} s (the server stalled)") from exc
        except FileNotFoundError as exc:
            raise _http_failure(uri, exc, limit) from exc
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"{_shown(uri)}: the connection failed ({type(exc).__name__}: {exc})") from exc
    with fsspec.open(uri, "rb", **options) as f:
        return f.read()


def _http_failure(uri: str, exc: FileNotFoundError, limit: float) -> OSError:
    """What an http(s) failure really was: fsspec reports any failed request as FileNotFoundError, with the
    cause behind it. A stall is a TimeoutError, a 5xx/429/408 answer or a dropped connection a ConnectionError
    (both transient: retried, then the painting fails as `storage`), 401/403 a PermissionError, the rest (404,
    no cause) stays FileNotFoundError."""
    import asyncio

    import aiohttp

    cause: BaseException | None = exc
    for _ in range(8):                # fsspec may wrap its FileNotFoundError in another one (glob hint)
        if not isinstance(cause, FileNotFoundError):
            break
        cause = cause.__cause__ or cause.__context__
    shown = _shown(uri)
    if isinstance(cause, (asyncio.TimeoutError, TimeoutError)):
        return TimeoutError(f"{shown}: no answer within {limit:g} s (the server stalled)")
    if isinstance(cause, aiohttp.ClientResponseError):
        what = f"{shown}: the server answered HTTP {cause.status} {cause.message or ''}".rstrip()
        if cause.status >= 500 or cause.status in (408, 429):
            return ConnectionError(what)
        if cause.status in (401, 403):
            return PermissionError(what)
        return FileNotFoundError(what)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return ConnectionError(f"{shown}: the host could not be reached ({type(cause).__name__}: {cause})")
    if isinstance(cause, (aiohttp.ClientError, OSError)):
        return ConnectionError(f"{shown}: the connection failed ({type(cause).__name__}: {cause})")
    return exc


def _shown(uri: str) -> str:
    """`uri` without its query string or userinfo (signatures stay out of messages)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def read_weight_bytes(uri: str, *, part: str, storage_options: Mapping | None = None) -> bytes:
    """A weight file's bytes, with errors that name the part and the file."""
    try:
        return read_bytes(uri, storage_options)
    except FileNotFoundError as exc:
        raise WeightsError(f"{part}: weight file {uri} does not exist.") from exc
    except OSError as exc:
        raise WeightsError(f"{part}: could not read {uri}: {exc}") from exc


def read_state_dict(uri: str, *, part: str, storage_options: Mapping | None = None) -> dict[str, torch.Tensor]:
    """A flat state dict from a .safetensors file or a .pth file (weights_only), from a path or fsspec URI."""
    return parse_state_dict(read_weight_bytes(uri, part=part, storage_options=storage_options), part=part,
                            source=uri)


def sha256_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """Content hash of a state dict: names, dtypes, shapes and bytes, in sorted name order.

    Independent of the file format, so the same weights read from .pth or .safetensors hash alike.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def parse_state_dict(data: bytes, *, part: str, source: str) -> dict[str, torch.Tensor]:
    """Decode weight-file bytes into a flat {name: tensor} dict without executing code.

    safetensors is recognised by its header; anything else is treated as a torch pickle and loaded with
    `weights_only=True`. Official checkpoints that wrap the state dict (e.g. {"state_dict": ...}) are unwrapped.
    """
    if looks_like_safetensors(data):
        try:
            return dict(load_safetensors_bytes(data))
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise WeightsError(f"{part}: {source} is not a readable safetensors file ({exc}).") from exc
    return unwrap_state_dict(load_torch_pickle(data, part=part, source=source), part=part, source=source)


def load_torch_pickle(data: bytes, *, part: str, source: str) -> object:
    """`torch.load(weights_only=True)` of in-memory bytes, with errors that name the part and file."""
    if len(data) == 0:
        raise WeightsError(f"{part}: {source} is empty (0 bytes).")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{part}: {source} was refused: it is a pickle that would construct objects or run code "
            f"beyond plain tensors (torch.load weights_only=True said: {str(exc).splitlines()[0]}). "
            "Only plain state dicts are accepted; convert the file to safetensors."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(
            f"{part}: {source} is truncated or not a torch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})."
        ) from exc
    return obj


def looks_like_safetensors(data: bytes) -> bool:
    # safetensors: 8-byte little-endian header length, then a JSON object starting with '{'.
    if len(data) < 10:
        return False
    n = int.from_bytes(data[:8], "little")
    return 0 < n <= len(data) - 8 and data[8:9] == b"{"


def unwrap_state_dict(obj: object, *, part: str, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model", "params"):
            if isinstance(obj.get(key), Mapping):
                return unwrap_state_dict(obj[key], part=part, source=source)
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{part}: {source} does not contain a state dict of tensors (found {type(obj).__name__}).")
    return {str(k): v for k, v in obj.items()}


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, part: str, source: str) -> None:
    """`module.load_state_dict(state, strict=True)` with an error that names part, keys and both shapes."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k}: file has {tuple(state[k].shape)}, model expects {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if wrong:
        problems.append("shape mismatch " + _few(wrong))
    if problems:
        raise WeightsError(
            f"{part}: {source} does not fit this model ({'; '.join(problems)}). "
            "Check that the file is the right part and the preset matches the checkpoint."
        )
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return f"[{shown}{f', … {len(items) - n} more' if len(items) > n else ''}]"
